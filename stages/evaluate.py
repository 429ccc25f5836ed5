"""DVC stage `evaluate` (its command in dvc.yaml): score the trained model on the test split.

Writes the headline metrics (``eval.json``: ``dvc exp show``), the per-class precision/recall/F1
and the reliability diagram's bins (``dvc plots``), the 10×10 confusion matrix (rows = actual)
and its counts as ``actual,predicted,count`` rows (the heatmap), and one ``actual,predicted,
confidence`` row per test image (the calibrated probability of its class: the report's order).
"""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import outputs, write_csv, write_json
from mnist_pipeline.core.params import load_section
from mnist_pipeline.core.runtime import configure_torch
from mnist_pipeline.data.splits import load_split
from mnist_pipeline.evaluation.evaluate import evaluate
from mnist_pipeline.evaluation.scores import confusion_counts
from mnist_pipeline.learning.model_file import load_model
from mnist_pipeline.learning.params import TrainParams


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="score the trained model on the test split")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="preprocess stage output")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--per-class", type=Path, required=True, help="per-class scores CSV")
    parser.add_argument("--confusion", type=Path, required=True, help="wide [C, C] CSV")
    parser.add_argument("--counts", type=Path, required=True, help="long CSV, one row per cell")
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--reliability", type=Path, help="reliability diagram CSV (optional)")
    args = parser.parse_args(argv)

    params = load_section(args.params, "train", TrainParams)
    configure_torch(params.threads, params.kernels)
    split = load_split(args.data / "test.safetensors")
    model, spec, _, head = load_model(args.model)
    result = evaluate(model, spec, split, head, str(args.model))

    with outputs() as out:  # the files change together or not at all
        write_json(result.metrics.as_json(), out.file(args.metrics), sort_keys=False)
        write_csv(result.per_class, out.file(args.per_class))
        write_csv(result.confusion, out.file(args.confusion), index=True)
        write_csv(confusion_counts(result.confusion), out.file(args.counts))
        write_csv(result.predictions, out.file(args.predictions))
        if args.reliability:
            write_csv(result.reliability, out.file(args.reliability))
    print(f"evaluate: accuracy {result.metrics['accuracy']:.4f} on {len(split)} test images")


if __name__ == "__main__":
    raise SystemExit(entry_point(main)())
