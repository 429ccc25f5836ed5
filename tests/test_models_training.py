"""models and training: shapes, save/load, the SGD step, overfitting, determinism, divergence."""

from pathlib import Path

import pytest
import torch

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import Split
from mnist_pipeline.data.tensors import save_tensors
from mnist_pipeline.learning.losses import Head
from mnist_pipeline.learning.model_file import load_model, save_model
from mnist_pipeline.learning.models import MODELS, ModelSpec, build_model
from mnist_pipeline.learning.optim import make_optimizer
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train

SPECS = [
    ModelSpec("linear", 784, 10),
    ModelSpec("mlp", 784, 10, (32, 16), "relu"),
    ModelSpec("cnn", 784, 10, (16,), "relu", (4, 8)),
    ModelSpec("cnn_bn", 784, 10, (16,), "relu", (4, 8)),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_models_map_batches_to_logits(spec: ModelSpec) -> None:
    assert spec.name in MODELS
    out = build_model(spec)(torch.rand(16, 784))
    assert out.shape == (16, 10)


def test_spec_json_round_trip() -> None:
    for spec in SPECS:
        assert ModelSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_save_load_round_trip(spec: ModelSpec, tmp_path: Path) -> None:
    model = build_model(spec)
    model(torch.rand(8, 784))  # a training-mode pass moves batch norm's running statistics
    save_model(model, spec, tmp_path / "m.safetensors", "mse", Head("sigmoid"), ())
    loaded, loaded_spec, loss, head = load_model(tmp_path / "m.safetensors")
    assert loaded_spec == spec and (loss, head) == ("mse", Head("sigmoid"))
    saved, state = loaded.state_dict(), model.state_dict()
    assert list(saved) == list(state)
    assert all(torch.equal(saved[k], v) and saved[k].shape == v.shape for k, v in state.items())
    x = torch.rand(3, 784)
    assert torch.equal(loaded.eval()(x), model.eval()(x))


def test_weights_from_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    other = build_model(SPECS[1])
    meta = {"spec": SPECS[0].to_json(), "loss": "mse", "output": "softmax"}
    save_tensors(other.state_dict(), path, meta)
    with pytest.raises(PipelineError, match="do not fit the linear architecture"):
        load_model(path)
    save_tensors(other.state_dict(), path, {})
    with pytest.raises(PipelineError, match="no usable model description"):
        load_model(path)
    save_tensors(other.state_dict(), path, {**meta, "output": "tanh"})
    with pytest.raises(PipelineError, match=r"output 'tanh' is none of \['softmax', 'sigmoid'\]"):
        load_model(path)


def test_sgd_step_is_the_notebooks() -> None:
    layer = torch.nn.Linear(2, 1, bias=False)
    p = layer.weight
    p.data, p.grad = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]])
    make_optimizer(TrainParams(lr=0.1), layer).step()
    assert torch.allclose(p.detach(), torch.tensor([[0.95, 2.1]]))


def _params(**kw: object) -> TrainParams:
    return TrainParams(**{"epochs": 2, "batch_size": 16, "lr": 0.5, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [
        {"model": "linear", "loss": "mse"},
        {"model": "linear", "loss": "cross_entropy"},
        {"model": "mlp", "hidden": (64,), "activation": "relu", "loss": "cross_entropy"},
        {"model": "mlp", "hidden": (64,), "activation": "sigmoid", "loss": "mse", "lr": 2.0},
    ],
    ids=["linear-mse", "linear-ce", "mlp-relu-ce", "mlp-sigmoid-mse"],
)
def test_overfits_one_batch(kw: dict[str, object], train_split: Split) -> None:
    batch = Split(train_split.images[:32], train_split.labels[:32], train_split.classes)
    params = _params(epochs=150, batch_size=32, **kw)
    history = train(params, batch, batch).history
    assert history[-1].accuracy == 1.0
    assert history[-1].train_loss < 0.1 * history[0].train_loss


def test_learns_the_synthetic_task(train_split: Split, test_split: Split) -> None:
    result = train(_params(epochs=5), train_split, test_split)
    history, spec = result.history, result.spec
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5]
    assert history[-1].accuracy >= 0.9
    assert history[-1].train_loss < history[0].train_loss
    assert spec == ModelSpec("linear", 784, 10)


def test_same_seed_same_weights_bit_for_bit(train_split: Split, test_split: Split) -> None:
    ra = train(_params(seed=3), train_split, test_split)
    rb = train(_params(seed=3), train_split, test_split)
    a, b = ra.model, rb.model
    c = train(_params(seed=4), train_split, test_split).model
    assert ra.history == rb.history
    for (name, pa), pb, pc in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name


def test_divergence_stops_naming_epoch_and_step(train_split: Split, test_split: Split) -> None:
    with pytest.raises(
        PipelineError, match=r"at epoch 1, step \d+: .*lower train.lr \(now 1e\+38\)"
    ):
        train(_params(lr=1e38, loss="cross_entropy"), train_split, test_split)


def test_batch_larger_than_data(train_split: Split, test_split: Split) -> None:
    with pytest.raises(PipelineError, match=r"batch_size=500 is larger than the training set"):
        train(_params(batch_size=500), train_split, test_split)


def test_model_registry_matches_the_params_choices() -> None:
    """Every ``train.model`` choice has a registry entry whose settings are train keys."""
    from dataclasses import fields
    from typing import get_args

    from mnist_pipeline.learning.params import TrainParams

    assert set(MODELS) == set(get_args(TrainParams.model_fields["model"].annotation))
    spec_fields = {f.name for f in fields(ModelSpec)}
    for entry in MODELS.values():
        assert set(entry.settings) <= spec_fields & set(TrainParams.model_fields)
