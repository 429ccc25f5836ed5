"""Print a run's headline numbers after ``make run``.

python -m mnist_pipeline summary [metrics/eval.json] [reports/report.md] \
    [data/processed/manifest.json]

Every ``Metrics`` field, labelled as the report labels it, after the data's provenance.
"""

import argparse
from pathlib import Path
from typing import Any

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import read_json
from mnist_pipeline.core.schemas import read_manifest
from mnist_pipeline.evaluation.scores import Metrics
from mnist_pipeline.reporting.report import provenance


def summarize(metrics: Metrics, report: Path, manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    data = provenance(manifest["dataset"], manifest["source"], counts["train"], counts["test"])
    labels = Metrics.labels()
    numbers = ", ".join(f"{labels[name]} {value:.4f}" for name, value in metrics.as_json().items())
    return f"\n{data}:\n{numbers}\nreport: {report}"


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline summary", description=__doc__.splitlines()[0]
    )
    parser.add_argument("metrics", nargs="?", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("report", nargs="?", type=Path, default=Path("reports/report.md"))
    parser.add_argument(
        "manifest", nargs="?", type=Path, default=Path("data/processed/manifest.json")
    )
    args = parser.parse_args(argv)
    metrics = Metrics.from_json(read_json(args.metrics), str(args.metrics))
    print(summarize(metrics, args.report, read_manifest(args.manifest).model_dump()))


if __name__ == "__main__":
    raise SystemExit(main())
