"""The hand-derived backprop in ``learning.backprop`` against autograd, in float64."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.learning.backprop import (
    ManualBackprop,
    chain,
    sigmoid_net_backprop,
)
from mnist_pipeline.learning.losses import LOSSES, one_hot
from mnist_pipeline.learning.models import ACTIVATIONS, MODELS, ModelSpec, build_model
from mnist_pipeline.tools.params import parse_params

SUPPORTED = {
    "activations": tuple(ACTIVATIONS),
    "outputs": tuple(LOSSES),
    "losses": tuple(LOSSES["softmax"]),
}
DTYPE = torch.float64
TOL = {"atol": 1e-12, "rtol": 1e-10}


def notebook_setup() -> tuple[Tensor, Tensor, list[Tensor]]:
    x = torch.tensor([[1, 2], [2, -1], [3, 0]], dtype=DTYPE)
    y = torch.tensor([[0], [1], [0]], dtype=DTYPE)
    w1 = torch.tensor([[0.1, -0.1], [0.2, 0], [0, 0.3]], dtype=DTYPE)
    w2 = torch.tensor([[0.05], [-0.1], [0.2]], dtype=DTYPE)
    return x, y, [w1, w2]


def autograd_sigmoid_net(
    x: Tensor, y: Tensor, weights: list[Tensor]
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Loss, ∂L/∂W_l and ∂L/∂U_l by autograd, written independently of the module."""
    leaves = [w.clone().requires_grad_(True) for w in weights]
    z = x
    pre: list[Tensor] = []
    for w in leaves:
        u = torch.cat([torch.ones(z.shape[0], 1, dtype=z.dtype), z], dim=1) @ w
        u.retain_grad()
        pre.append(u)
        z = torch.sigmoid(u)
    loss = ((z - y) ** 2).sum() / (2 * x.shape[0])
    loss.backward()
    return loss.detach(), [w.grad for w in leaves], [u.grad for u in pre]


def random_sigmoid_net(seed: int, depth: int) -> tuple[Tensor, Tensor, list[Tensor]]:
    g = torch.Generator().manual_seed(seed)
    widths = [int(v) for v in torch.randint(1, 6, (depth + 1,), generator=g)]
    n = int(torch.randint(1, 7, (1,), generator=g))
    x = torch.randn(n, widths[0], generator=g, dtype=DTYPE)
    y = torch.rand(n, widths[-1], generator=g, dtype=DTYPE)
    weights = [
        torch.randn(1 + a, b, generator=g, dtype=DTYPE) for a, b in itertools.pairwise(widths)
    ]
    return x, y, weights


def assert_matches_autograd(x: Tensor, y: Tensor, weights: list[Tensor]) -> None:
    result = sigmoid_net_backprop(x, y, weights)
    loss, grads, deltas = autograd_sigmoid_net(x, y, weights)
    torch.testing.assert_close(result.loss, loss, **TOL)
    assert result.loss.dim() == 0
    assert len(result.activations) == len(weights) + 1
    assert result.activations[0] is x
    assert len(result.pre_activations) == len(result.deltas) == len(result.grads) == len(weights)
    for manual, auto, w in zip(result.grads, grads, weights, strict=True):
        assert manual.shape == w.shape
        torch.testing.assert_close(manual, auto, **TOL)
    for manual, auto in zip(result.deltas, deltas, strict=True):
        torch.testing.assert_close(manual, auto, **TOL)


# --- the Question 1 network --------------------------------------------------------------


def test_notebook_network_matches_autograd() -> None:
    assert_matches_autograd(*notebook_setup())


def test_notebook_network_values() -> None:
    """Spot values worked out from the formulas (independent of autograd)."""
    x, y, weights = notebook_setup()
    result = sigmoid_net_backprop(x, y, weights)
    torch.testing.assert_close(
        result.pre_activations[0], torch.tensor([[0.3, 0.5], [0.5, -0.4], [0.7, -0.1]], dtype=DTYPE)
    )
    z2 = result.activations[2]
    torch.testing.assert_close(result.deltas[1], (z2 - y) * z2 * (1 - z2) / 3, **TOL)
    assert result.deltas[0].shape == (3, 2)
    assert abs(float(result.loss) - 0.13054870862595713) < 1e-12


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sigmoid_nets_match_autograd(depth: int, seed: int) -> None:
    assert_matches_autograd(*random_sigmoid_net(100 * depth + seed, depth))


def test_sigmoid_net_runs_without_autograd() -> None:
    x, y, weights = notebook_setup()
    with torch.no_grad():
        result = sigmoid_net_backprop(x, y, [w.requires_grad_(True) for w in weights])
    assert not result.loss.requires_grad
    assert all(not g.requires_grad for g in result.grads)
    assert all(w.grad is None for w in weights)


# --- the pipeline's models ---------------------------------------------------------------

ARCHITECTURES = {"linear": ("linear", ()), "mlp1": ("mlp", (7,)), "mlp2": ("mlp", (6, 5))}


def make_model(arch: str, activation: str, seed: int) -> tuple[nn.Module, Tensor, Tensor]:
    """A float64 model with seeded weights, and a batch (x [B, in], labels [B])."""
    name, hidden = ARCHITECTURES[arch]
    g = torch.Generator().manual_seed(seed)
    in_features, classes, batch = 9, 4, 5
    settings = {"hidden": hidden, "activation": activation} if name == "mlp" else {}
    model = build_model(ModelSpec(name, in_features, classes, **settings)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DTYPE))
    x = torch.randn(batch, in_features, generator=g, dtype=DTYPE)
    labels = torch.randint(0, classes, (batch,), generator=g)
    return model, x, labels


@torch.no_grad()
def manual_gradients(
    model: nn.Module, x: Tensor, labels: Tensor, output: str, loss: str
) -> tuple[Tensor, dict[str, Tensor]]:
    """``ManualBackprop``'s loss and gradients, keyed like ``model.named_parameters()``."""
    engine = ManualBackprop(model, output, loss)
    value, grads = engine.gradients(x, one_hot(labels, engine.layers[-1].out_features, x.dtype))
    names = [name for name, _ in model.named_parameters()]
    return value, dict(zip(names, grads, strict=True))


def reference_loss(logits: Tensor, labels: Tensor, output: str, loss: str) -> Tensor:
    """The loss each combination means, written with library functions."""
    target = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    if output == "softmax" and loss == "mse":
        return LOSSES["softmax"]["mse"](logits, labels)
    if output == "softmax" and loss == "cross_entropy":
        return F.cross_entropy(logits, labels)
    if output == "sigmoid" and loss == "mse":
        return ((torch.sigmoid(logits) - target) ** 2).sum(1).mean()
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(labels)


@pytest.mark.parametrize("loss", SUPPORTED["losses"])
@pytest.mark.parametrize("output", SUPPORTED["outputs"])
@pytest.mark.parametrize("activation", SUPPORTED["activations"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_manual_gradients_match_autograd(
    arch: str, activation: str, output: str, loss: str
) -> None:
    model, x, labels = make_model(arch, activation, seed=len(arch) + 10 * len(output))
    value, grads = manual_gradients(model, x, labels, output, loss)

    expected = reference_loss(model(x), labels, output, loss)
    expected.backward()
    torch.testing.assert_close(value, expected.detach(), **TOL)
    names = [name for name, _ in model.named_parameters()]
    assert list(grads) == names
    for name, p in model.named_parameters():
        assert grads[name].shape == p.shape, name
        torch.testing.assert_close(grads[name], p.grad, **TOL, msg=name)


def test_manual_gradients_keys_for_mlp() -> None:
    model, x, labels = make_model("mlp2", "relu", seed=0)
    _, grads = manual_gradients(model, x, labels, "softmax", "mse")
    assert list(grads) == [
        "net.0.weight",
        "net.0.bias",
        "net.2.weight",
        "net.2.bias",
        "net.4.weight",
        "net.4.bias",
    ]


def test_manual_gradients_under_no_grad() -> None:
    model, x, labels = make_model("mlp2", "sigmoid", seed=3)
    outside_value, outside = manual_gradients(model, x, labels, "softmax", "cross_entropy")
    with torch.no_grad():
        value, grads = manual_gradients(model, x, labels, "softmax", "cross_entropy")
    torch.testing.assert_close(value, outside_value, atol=0, rtol=0)
    for name, p in model.named_parameters():
        assert p.grad is None  # autograd never ran
        assert not grads[name].requires_grad
        torch.testing.assert_close(grads[name], outside[name], atol=0, rtol=0)
    assert not value.requires_grad


def test_manual_gradients_stable_for_large_logits() -> None:
    model, x, labels = make_model("linear", "sigmoid", seed=4)
    x = x * 1e4  # saturate: log(p) would be -inf, log_softmax/logsigmoid stay finite
    for output in SUPPORTED["outputs"]:
        value, grads = manual_gradients(model, x, labels, output, "cross_entropy")
        assert torch.isfinite(value)
        assert all(torch.isfinite(g).all() for g in grads.values())


def test_manual_gradients_rejects_unknown_inputs() -> None:
    model, x, labels = make_model("linear", "sigmoid", seed=5)
    with pytest.raises(ValueError, match="identity"):
        manual_gradients(model, x, labels, "identity", "mse")
    with pytest.raises(ValueError, match="hinge"):
        manual_gradients(model, x, labels, "softmax", "hinge")
    conv = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(TypeError, match="autograd"):
        manual_gradients(conv, x, labels, "softmax", "mse")


def test_engine_support_is_the_registry_s() -> None:
    """A model's ``manual`` flag says what the engine does with it, and the params follow
    the flag: ``gradients: manual`` is accepted for exactly the flagged models."""
    for name, entry in MODELS.items():
        settings = {"hidden": (5,), "channels": (2,), "activation": "relu"}
        spec = ModelSpec(name, 784, 3, **{k: settings[k] for k in entry.settings})
        assert bool(chain(build_model(spec))) == entry.manual, name
        train = {"model": name, "gradients": "manual"}
        if entry.manual:
            assert parse_params({"data": {}, "train": train, "report": {}}).train.model == name
        else:
            with pytest.raises(PipelineError, match=rf"model '{name}' is autograd only"):
                parse_params({"data": {}, "train": train, "report": {}})
    assert [n for n, e in MODELS.items() if e.manual] == ["linear", "mlp"]


@pytest.mark.parametrize("loss", SUPPORTED["losses"])
def test_manual_sgd_step_reproduces_notebook_step(loss: str) -> None:
    """Three steps of manual backprop + SGD == loss.backward() + SGD on p.grad."""
    manual, x, labels = make_model("mlp1", "sigmoid", seed=6)
    auto = copy.deepcopy(manual)
    auto_sgd = torch.optim.SGD(list(auto.parameters()), 0.1)
    for _ in range(3):
        _, grads = manual_gradients(manual, x, labels, "softmax", loss)
        with torch.no_grad():
            for p, g in zip(manual.parameters(), grads.values(), strict=True):
                p -= 0.1 * g
        LOSSES["softmax"][loss](auto(x), labels).backward()
        auto_sgd.step()
        auto_sgd.zero_grad()
    for (name, p), q in zip(manual.named_parameters(), auto.parameters(), strict=True):
        torch.testing.assert_close(p, q, **TOL, msg=name)


@pytest.mark.parametrize("n", [15, 12])  # a short last batch, and none
def test_notebook_epoch_is_the_notebook_step(n: int) -> None:
    """``ManualBackprop.sgd_step`` (bias-augmented, one ``addmm_`` a layer) == autograd MSE +
    ``p -= lr * grad`` batch by batch: the same weights after the epoch, the same losses."""
    fast, _, _ = make_model("linear", "sigmoid", seed=8)
    auto = copy.deepcopy(fast)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(n, 9, generator=g, dtype=DTYPE)
    labels = torch.randint(0, 4, (n,), generator=g)
    target = F.one_hot(labels, 4).to(DTYPE)
    engine = ManualBackprop(fast, "softmax", "mse", lr=0.3)
    order = torch.randperm(n, generator=g)
    losses = torch.stack([engine.sgd_step(x[idx], target[idx]) for idx in order.split(4)])
    engine.push()
    expected = []
    for idx in order.split(4):
        xb, yb = x[idx], labels[idx]
        loss = LOSSES["softmax"]["mse"](auto(xb), yb)
        loss.backward()
        with torch.no_grad():
            for p in auto.parameters():
                p -= 0.3 * p.grad  # type: ignore[operator]
                p.grad = None
        expected.append(loss.detach())
    torch.testing.assert_close(losses, torch.stack(expected), **TOL)
    for (name, p), q in zip(fast.named_parameters(), auto.parameters(), strict=True):
        torch.testing.assert_close(p, q, **TOL, msg=name)
