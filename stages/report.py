"""DVC stage `report`: a markdown report with figures for one run.

    python stages/report.py --params params.yaml --manifest data/raw/manifest.json \
        --data data/processed --metrics metrics/eval.json --log metrics/train_log.csv \
        --confusion metrics/confusion_matrix.csv --predictions metrics/predictions.csv \
        --out reports

Writes ``reports/report.md`` and ``reports/figures/*.png``: learning curve, confusion
heatmap, per-class precision/recall/F1, the first ``report.n_images`` test images and the
first ``report.n_images`` misclassified ones, each titled with the data's provenance.
"""

import argparse
from pathlib import Path

from mnist_pipeline.core.cli import run_stage
from mnist_pipeline.core.io import atomic_dir, read_csv, read_json, save_figure, write_text
from mnist_pipeline.core.params import load_params
from mnist_pipeline.data.splits import load_split
from mnist_pipeline.reporting.report import FIGURES, build_figures, provenance, render_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--confusion", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    args = parser.parse_args()

    params = load_params(args.params)
    manifest = read_json(args.manifest)
    metrics = read_json(args.metrics)
    history = read_csv(args.log)
    confusion = read_csv(args.confusion, index_col=0)
    predictions = read_csv(args.predictions, dtype=str)
    split = load_split(args.data / "test.safetensors")
    class_index = {name: i for i, name in enumerate(split.classes)}
    predicted = predictions["predicted"].map(class_index).to_numpy()

    counts = manifest["counts"]
    subtitle = provenance(manifest["dataset"], manifest["source"], counts["train"], counts["test"])
    figures = build_figures(
        history,
        confusion,
        split,
        predicted,
        params.report.n_images,
        per_class=metrics["per_class"],
        subtitle=subtitle,
    )
    text = render_markdown(
        manifest,
        params.model_dump(include={"data", "train"}),
        metrics,
        history,
        confusion,
        figures_dir="figures",
    )
    with atomic_dir(args.out) as tmp:
        for name, fig in figures.items():
            save_figure(fig, tmp / "figures" / FIGURES[name])
        write_text(text, tmp / "report.md")
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
