"""``make exps``: this commit and its experiments side by side (``dvc.api.exp_show``), the
headline metrics and only the params that differ, so it fits a terminal."""

from __future__ import annotations

import argparse
from typing import Any

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.tools.params import SECTIONS

META = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}


def shown(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """Experiments as columns; rows: every metric, then each param whose values differ."""
    import pandas as pd

    kept = [row for row in rows if row["rev"] != "workspace"]
    if not kept:
        raise PipelineError("no commit or experiment to show; run `dvc repro` and commit first")
    names = [row["Experiment"] or row["rev"] for row in kept]
    frame = pd.DataFrame(kept, index=names).drop(columns=[c for c in META if c in kept[0]])
    params = [c for c in frame.columns if c.split(".")[0] in SECTIONS]
    metrics = [c for c in frame.columns if "." not in c and "/" not in c]
    changed = [c for c in params if frame[c].map(shown).nunique() > 1]
    return frame[metrics + changed].T.map(shown).to_markdown(tablefmt="simple")


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="this commit and its experiments: metrics and the params that differ",
    )
    parser.add_argument("--rev", default=None, help="the commit whose experiments to show")
    args = parser.parse_args(argv)
    import dvc.api

    print(table(dvc.api.exp_show(revs=args.rev)))
