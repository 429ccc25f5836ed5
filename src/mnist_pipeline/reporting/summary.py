"""``make run``'s last lines: a run's headline numbers, labelled as the report labels them."""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import read_json
from mnist_pipeline.data.sources import read_manifest
from mnist_pipeline.evaluation.scores import Metrics
from mnist_pipeline.reporting.report import headline, provenance


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="print a run's headline numbers")
    parser.add_argument("metrics", nargs="?", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("report", nargs="?", type=Path, default=Path("reports/report.md"))
    parser.add_argument(
        "manifest", nargs="?", type=Path, default=Path("data/processed/manifest.json")
    )
    args = parser.parse_args(argv)
    metrics = Metrics.from_json(read_json(args.metrics), str(args.metrics))
    data = provenance(read_manifest(args.manifest).model_dump())
    print(f"\n{data}:\n{headline(metrics)}\nreport: {args.report}")
