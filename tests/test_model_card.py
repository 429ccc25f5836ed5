"""The report's model card names what shipped: data, params, metrics, use, limits, files."""

from __future__ import annotations

from mnist_pipeline.evaluation.scores import Metrics
from mnist_pipeline.reporting.report import model_card

MANIFEST = {
    "dataset": "fashion-mnist",
    "source": "embedded",
    "counts": {"train": 4000, "test": 1000},
}


def test_model_card_states_data_params_metrics_use_limits_and_files() -> None:
    notebook = {"accuracy": 0.8512, "cross_entropy": 0.31, "macro_f1": 0.84}
    trust = {"ece": 0.02, "robust_accuracy": 0.5, "answered": 0.9, "answered_accuracy": 0.9}
    metrics = Metrics.from_json({**notebook, **trust}, "eval.json")
    train = {"model": "mlp", "hidden": [128], "activation": "relu", "lr": 0.01, "epochs": 10}
    card = model_card(MANIFEST, train, metrics)
    assert card.startswith("## Model card\n")
    assert "- **Model:** mlp (hidden [128], activation relu); lr 0.01, epochs 10." in card
    assert "fashion-mnist from embedded: 4,000 training images, 1,000 test images" in card
    metrics_line = (
        "test accuracy 0.8512, test cross-entropy 0.3100, macro F1 0.8400, calibration error "
        "0.0200, perturbed-test accuracy 0.5000, share answered 0.9000, accuracy when answered "
        "0.9000."
    )
    assert f"- **Metrics (test set):** {metrics_line}" in card
    assert "**Intended use:**" in card and "5,000-image embedded sample" in card
    assert "`models/model.onnx`" in card and "dvc artifacts get <repo> mnist-classifier" in card
    mirror = model_card({**MANIFEST, "source": "mirror"}, {"model": "linear"}, metrics)
    assert "embedded sample" not in mirror and "- **Model:** linear; ." not in mirror
    assert "- **Model:** linear." in mirror
