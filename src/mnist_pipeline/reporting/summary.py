"""Print a run's headline numbers after ``make run``.

python -m mnist_pipeline summary [metrics/eval.json] [reports/report.md]
"""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import read_json


def summarize(metrics: dict[str, object], report: Path) -> str:
    return (
        f"\n{metrics['dataset']} ({metrics['source']} data, {metrics['n_test']} test images): "
        f"accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
        f"{metrics['loss_name']} loss {metrics['loss']:.4f}\nreport: {report}"
    )


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline summary", description=__doc__.splitlines()[0]
    )
    parser.add_argument("metrics", nargs="?", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("report", nargs="?", type=Path, default=Path("reports/report.md"))
    args = parser.parse_args(argv)
    print(summarize(read_json(args.metrics), args.report))


if __name__ == "__main__":
    raise SystemExit(main())
