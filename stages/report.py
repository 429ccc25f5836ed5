"""DVC stage `report`: a markdown report with figures for one run.

    python stages/report.py --params params.yaml --data data/processed \
        --metrics metrics/eval.json --log metrics/train_log.csv \
        --predictions metrics/predictions.csv --model models/model.safetensors --out reports

Writes ``reports/report.md`` and ``reports/figures/*.png``: learning curves (train vs
validation, the shipped epoch marked), confusion heatmap, per-class precision/recall/F1,
the first ``report.n_images`` test images and the ``report.n_images`` ones the model got
most confidently wrong, each titled with the data's provenance
(``data/processed/manifest.json``), and a model card (``reporting.model_card``). The
confusion matrix and per-class scores come from ``predictions.csv`` through the evaluate
stage's own functions; the confidence of each prediction comes from the model
(``predictions.csv`` keeps its two columns).
"""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import run_stage
from mnist_pipeline.core.io import atomic_dir, read_json, read_yaml, save_figure, write_text
from mnist_pipeline.core.runtime import configure_torch
from mnist_pipeline.data.sources import read_manifest
from mnist_pipeline.data.splits import load_split
from mnist_pipeline.evaluation import evaluate as evaluation
from mnist_pipeline.evaluation.scores import (
    Metrics,
    confusion_frame,
    per_class_frame,
    read_predictions,
)
from mnist_pipeline.learning.config import load_params
from mnist_pipeline.learning.history import read_history
from mnist_pipeline.learning.model_file import load_model
from mnist_pipeline.reporting.model_card import model_card
from mnist_pipeline.reporting.report import FIGURES, build_figures, provenance, render_markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a markdown report with figures for one run")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="preprocess stage output")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument(
        "--model", type=Path, required=True, help="for each prediction's confidence"
    )
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    args = parser.parse_args(argv)

    params = load_params(args.params)  # validate the whole file before any work
    written = read_yaml(args.params)  # ... and show its values as YAML spells them ([128], null)
    # Every input validated (one line naming file and field) before any figure is drawn.
    manifest = read_manifest(args.data / "manifest.json").model_dump()
    metrics = Metrics.from_json(read_json(args.metrics), str(args.metrics))
    history = read_history(args.log)
    split = load_split(args.data / "test.safetensors")
    actual, predicted = read_predictions(args.predictions, split.classes, len(split))
    confusion = confusion_frame(actual, predicted, split.classes)
    configure_torch(params.train.threads, params.train.kernels)
    model, _, _, output = load_model(args.model)
    confidence = evaluation.confidence(model, split, output)
    per_class = per_class_frame(confusion)

    figures = build_figures(
        history,
        confusion,
        split,
        predicted,
        params.report.n_images,
        per_class=per_class,
        subtitle=provenance(manifest),
        confidence=confidence,
    )
    text = render_markdown(
        manifest,
        {name: written[name] for name in ("data", "train")},
        metrics,
        history,
        confusion,
        per_class,
        figures_dir="figures",
    )
    text += "\n" + model_card(manifest, written["train"], metrics)
    with atomic_dir(args.out, owns=("report.md", "figures/*.png")) as tmp:
        for name, fig in figures.items():
            save_figure(fig, tmp / "figures" / FIGURES[name])
        write_text(text, tmp / "report.md")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
