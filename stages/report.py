"""DVC stage `report`: a markdown report with figures for one run, from what the stages before
it wrote (no torch, no model).

    python stages/report.py --params params.yaml --data data/processed \
        --metrics metrics/eval.json --log metrics/train_log.csv \
        --predictions metrics/predictions.csv --out reports

Writes ``reports/report.md`` (``reporting.report``: provenance, params, headline metrics, the
per-epoch, confusion and per-class tables, a model card) and ``reports/figures/*.png``
(``reporting.figures``: learning curves, the first ``report.n_images`` test images and the
``report.n_images`` the model got most confidently wrong), each titled with the data's
provenance (``data/processed/manifest.json``). The confusion matrix and per-class scores come
from ``predictions.csv`` through the evaluate stage's own functions, as does each prediction's
confidence.
"""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import atomic_dir, read_json, save_figure, write_text
from mnist_pipeline.core.params import load_section, read_yaml
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import read_manifest
from mnist_pipeline.data.splits import load_split
from mnist_pipeline.evaluation.scores import (
    Metrics,
    confusion_frame,
    per_class_frame,
    read_predictions,
)
from mnist_pipeline.learning.history import read_history
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.reporting.figures import build_figures
from mnist_pipeline.reporting.params import ReportParams
from mnist_pipeline.reporting.report import provenance, render_markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a markdown report with figures for one run")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, required=True, help="preprocess stage output")
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    args = parser.parse_args(argv)

    for name, section in (("data", DataParams), ("train", TrainParams)):
        load_section(args.params, name, section)  # every section it shows, validated first
    report = load_section(args.params, "report", ReportParams)
    written = read_yaml(args.params)  # ... and show its values as YAML spells them ([128], null)
    # Every input validated (one line naming file and field) before any figure is drawn.
    manifest = read_manifest(args.data / "manifest.json").model_dump()
    metrics = Metrics.from_json(read_json(args.metrics), str(args.metrics))
    history = read_history(args.log)
    split = load_split(args.data / "test.safetensors")
    actual, predicted, confidence = read_predictions(args.predictions, split.classes, len(split))
    confusion = confusion_frame(actual, predicted, split.classes)

    figures = build_figures(
        history, split, predicted, confidence, report.n_images, provenance(manifest)
    )
    sections = {name: written[name] for name in ("data", "train")}
    text = render_markdown(
        manifest, sections, metrics, history, confusion, per_class_frame(confusion), "figures"
    )
    with atomic_dir(args.out) as tmp:
        for name, fig in figures.items():
            save_figure(fig, tmp / "figures" / f"{name}.png")
        write_text(text, tmp / "report.md")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    raise SystemExit(entry_point(main)())
