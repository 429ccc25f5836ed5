"""The training engine: manual vs autograd gradients, optimizers, cnn, validation split, device."""

import itertools
import re

import numpy as np
import pytest
import torch

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import Split, read_raw_split
from mnist_pipeline.learning.history import history_csv
from mnist_pipeline.learning.models import ModelSpec, build_cnn, build_model
from mnist_pipeline.learning.optim import make_optimizer
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train
from mnist_pipeline.tools.params import parse_params


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Split, Split]:
    """The real 4,000/1,000 embedded MNIST sample, as the pipeline would preprocess it."""
    from mnist_pipeline.data.params import DataParams

    raw = tmp_path_factory.mktemp("embedded")
    manifest = fetch(DataParams(source="embedded"), raw)
    return tuple(read_raw_split(raw, *IDX_FILES[s], manifest) for s in ("train", "test"))  # type: ignore[return-value]


SUPPORTED = [
    combo
    for combo in itertools.product(
        ["linear", "mlp"], ["sigmoid", "relu"], ["softmax", "sigmoid"], ["mse", "cross_entropy"]
    )
    if not (combo[0] == "linear" and combo[1] == "relu")  # linear has no hidden activation
]


@pytest.mark.parametrize(("model", "activation", "output", "loss"), SUPPORTED)
def test_manual_engine_trains_like_autograd(
    embedded: tuple[Split, Split], model: str, activation: str, output: str, loss: str
) -> None:
    """Same seed, 3 epochs: the hand-derived backward pass reaches autograd's accuracy."""
    common = {
        "model": model, "hidden": (32,), "activation": activation, "output": output,
        "loss": loss, "lr": 0.5, "batch_size": 32, "epochs": 3,
    }  # fmt: skip
    auto = train(TrainParams(**common, gradients="autograd"), *embedded)  # type: ignore[arg-type]
    manual = train(TrainParams(**common, gradients="manual"), *embedded)  # type: ignore[arg-type]
    a, m = auto.history[-1].accuracy, manual.history[-1].accuracy
    assert abs(a - m) <= 0.002, (a, m)
    assert a > 0.5  # it actually learned something
    for (name, pa), pm in zip(
        auto.model.state_dict().items(), manual.model.state_dict().values(), strict=True
    ):
        assert torch.allclose(pa, pm, atol=1e-3), name


def test_manual_rejects_cnn_when_params_are_validated() -> None:
    with pytest.raises(PipelineError, match=r"train\.gradients: manual: model 'cnn' is autograd"):
        parse_params({"data": {}, "train": {"model": "cnn", "gradients": "manual"}, "report": {}})


def test_momentum_needs_sgd() -> None:
    with pytest.raises(PipelineError, match=r"train\.momentum: 0\.9 applies to optimizer sgd"):
        TrainParams(optimizer="adam", momentum=0.9)


def test_torch_sgd_is_the_notebook_step_bit_for_bit() -> None:
    spec = ModelSpec("mlp", 784, 10, (16,), "sigmoid")
    torch.manual_seed(0)
    a = build_model(spec)
    b = build_model(spec)
    b.load_state_dict(a.state_dict())
    optimizer = make_optimizer(TrainParams(lr=0.05), b)
    x, y = torch.rand(8, 784), torch.arange(8)
    for model in (a, b):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    torch.optim.SGD(a.parameters(), lr=0.05).step()
    optimizer.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize(
    "kw",
    [
        {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05},
        {"optimizer": "sgd", "weight_decay": 1e-3, "lr": 0.5},
        {"optimizer": "adam", "lr": 0.01},
        {"model": "cnn", "channels": (4, 8), "hidden": (16,), "activation": "relu",
         "gradients": "autograd", "loss": "cross_entropy", "optimizer": "adam", "lr": 0.01},
    ],
    ids=["momentum", "weight-decay", "adam", "cnn"],
)  # fmt: skip
def test_optimizers_and_cnn_learn(
    kw: dict[str, object], train_split: Split, test_split: Split
) -> None:
    result = train(TrainParams(**{"epochs": 4, "batch_size": 16, **kw}), train_split, test_split)  # type: ignore[arg-type]
    assert result.history[-1].accuracy >= 0.9
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_cnn_shapes() -> None:
    model = build_cnn(784, 10, channels=(6, 16), hidden=(120, 84), activation="relu")
    assert model(torch.rand(5, 784)).shape == (5, 10)
    with pytest.raises(ValueError, match="square images"):
        build_cnn(780, 10, channels=(4,), hidden=(8,), activation="relu")


def test_val_fraction_keeps_the_test_set_untouched(train_split: Split, test_split: Split) -> None:
    params = TrainParams(epochs=2, lr=0.5, val_fraction=0.2)
    result = train(params, train_split, test_split)
    assert result.scored_on == "val"
    log = history_csv(result.history, "val", shipped=result.shipped)
    assert log.splitlines()[0].split(",") == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "shipped",
    ]
    scrambled = Split(
        np.random.default_rng(0).random(test_split.images.shape, dtype=np.float32),
        test_split.labels[::-1].copy(),
        test_split.classes,
    )
    again = train(params, train_split, scrambled)
    assert again.history == result.history
    for pa, pb in zip(result.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_val_fraction_too_small(train_split: Split, test_split: Split) -> None:
    with pytest.raises(PipelineError, match=r"val_fraction=0\.001: cannot hold out .* of 0 images"):
        train(TrainParams(val_fraction=0.001), train_split, test_split)


def test_notebook_default_scores_test_each_epoch(train_split: Split, test_split: Split) -> None:
    result = train(TrainParams(epochs=2, lr=0.5), train_split, test_split)
    assert result.scored_on == "test"
    assert len(result.seconds_per_epoch) == 2


def test_the_notebook_log_keeps_its_columns(train_split: Split, test_split: Split) -> None:
    """val_fraction 0 and a constant rate: the notebook's three columns, nothing added."""
    result = train(TrainParams(epochs=2, lr=0.5), train_split, test_split)
    log = history_csv(result.history, result.scored_on, False, result.shipped)
    assert log.splitlines()[0] == "epoch,train_loss,test_accuracy"
    assert (result.shipped, result.stop_reason) == (2, "completed all 2 epochs")


def test_training_logs_one_line_per_epoch(
    train_split: Split, test_split: Split, caplog: pytest.LogCaptureFixture
) -> None:
    """The notebook's view of a run: per epoch the loss, the scoring accuracy and the time."""
    params = TrainParams(epochs=2, lr=0.5, batch_size=20)
    with caplog.at_level("INFO", logger="mnist_pipeline.train"):
        train(params, train_split, test_split)
    lines = [r.getMessage() for r in caplog.records if r.name == "mnist_pipeline.train"]
    assert len(lines) == 2
    for epoch, line in enumerate(lines, 1):
        pattern = rf"epoch {epoch}/2: train loss [\d.]+, test accuracy [\d.]+ \([\d.]+ s\)"
        assert re.fullmatch(pattern, line), line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_cuda_without_gpu_is_a_clear_error(train_split: Split, test_split: Split) -> None:
    with pytest.raises(PipelineError, match=r"train\.device=cuda but torch sees no CUDA GPU"):
        train(TrainParams(device="cuda"), train_split, test_split)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_matches_cpu(train_split: Split, test_split: Split) -> None:
    cpu = train(TrainParams(epochs=3, lr=0.5, device="cpu"), train_split, test_split)
    gpu = train(TrainParams(epochs=3, lr=0.5, device="cuda"), train_split, test_split)
    assert abs(cpu.history[-1].accuracy - gpu.history[-1].accuracy) <= 0.005
