"""Print a run's headline numbers after ``make run``.

python -m mnist_pipeline.reporting.summary metrics/eval.json reports/report.md
"""

import sys
from pathlib import Path

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import read_json


def summarize(metrics: dict[str, object], report: Path) -> str:
    return (
        f"\n{metrics['dataset']} ({metrics['source']} data, {metrics['n_test']} test images): "
        f"accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}, "
        f"{metrics['loss_name']} loss {metrics['loss']:.4f}\nreport: {report}"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    metrics_path = Path(args[0] if args else "metrics/eval.json")
    report = Path(args[1] if len(args) > 1 else "reports/report.md")
    try:
        print(summarize(read_json(metrics_path), report))
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
