"""DVC stage `report` (its command in dvc.yaml): ``reports/report.md`` and ``figures/*.png`` for
one run from what the stages before it wrote (no torch, no model), titled with the provenance."""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.io import atomic_dir, read_json, save_figure, write_text
from mnist_pipeline.core.params import load_section, read_yaml
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import read_manifest
from mnist_pipeline.data.splits import load_split
from mnist_pipeline.evaluation import scores
from mnist_pipeline.learning.history import read_history
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.reporting.figures import build_figures
from mnist_pipeline.reporting.params import ReportParams
from mnist_pipeline.reporting.report import provenance, render_markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a markdown report with figures for one run")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    for name in ("data", "metrics", "log", "predictions", "out"):  # data: preprocess's output
        parser.add_argument(f"--{name}", type=Path, required=True)
    args = parser.parse_args(argv)
    # Every input validated (one line naming file and field) before any figure is drawn.
    for name, section in (("data", DataParams), ("train", TrainParams)):
        load_section(args.params, name, section)
    n_images = load_section(args.params, "report", ReportParams).n_images
    written = read_yaml(args.params)  # shown as params.yaml spells them: [128], null
    manifest = read_manifest(args.data / "manifest.json").model_dump()
    metrics = scores.Metrics.from_json(read_json(args.metrics), str(args.metrics))
    history, split = read_history(args.log), load_split(args.data / "test.safetensors")
    classes = split.classes
    actual, predicted, confidence = scores.read_predictions(args.predictions, classes, len(split))
    confusion = scores.confusion_frame(actual, predicted, classes)
    figures = build_figures(history, split, predicted, confidence, n_images, provenance(manifest))
    shown = {name: written[name] for name in ("data", "train")}
    per_class = scores.per_class_frame(confusion)
    text = render_markdown(manifest, shown, metrics, history, confusion, per_class, "figures")
    with atomic_dir(args.out) as tmp:
        for name, fig in figures.items():
            save_figure(fig, tmp / "figures" / f"{name}.png")
        write_text(text, tmp / "report.md")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    raise SystemExit(entry_point(main)())
