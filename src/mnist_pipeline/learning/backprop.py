"""Backpropagation written out from the derivation (docs/backprop.md): the notebook's Question 1
network, and ``ManualBackprop``, the engine that trains the registry's ``manual`` models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_pipeline.learning.losses import LOSSES, OUTPUTS


class BackpropResult(NamedTuple):
    loss: Tensor  # 0-d
    activations: tuple[Tensor, ...]  # Z_l: [N, d_l], l = 0..L
    pre_activations: tuple[Tensor, ...]  # U_l: [N, d_l], l = 1..L
    deltas: tuple[Tensor, ...]  # δ_l = ∂L/∂U_l: [N, d_l], l = 1..L
    grads: tuple[Tensor, ...]  # ∂L/∂W_l: [1 + d_{l-1}, d_l], l = 1..L


@torch.no_grad()
def sigmoid_net_backprop(x: Tensor, y: Tensor, weights: Sequence[Tensor]) -> BackpropResult:
    """The forward and backward pass of ``x [N, d_0]`` with targets ``y [N, d_L]`` in [0, 1]
    through ``weights[l-1] = W_l`` (bias first), every layer sigmoid, the notebook's loss."""
    activations, pre_activations = [x], []
    for w in weights:
        pre_activations.append(F.pad(activations[-1], (1, 0), value=1.0) @ w)  # [1 Z] W
        activations.append(torch.sigmoid(pre_activations[-1]))
    n = x.shape[0]
    z_out = activations[-1]
    loss = (z_out - y).pow(2).sum() / (2 * n)
    delta = (z_out - y) * z_out * (1 - z_out) / n  # ∂L/∂Z_L = (Z_L - Y)/N: the 2 cancels
    deltas, grads = [delta], []
    for layer in range(len(weights), 0, -1):  # layer = L, ..., 1
        z_in = activations[layer - 1]
        grads.insert(0, F.pad(z_in, (1, 0), value=1.0).T @ delta)
        if layer > 1:  # row 0 of W_l is the bias: it multiplies the constant 1, not Z_{l-1}
            delta = (delta @ weights[layer - 1][1:].T) * z_in * (1 - z_in)
            deltas.insert(0, delta)
    return BackpropResult(
        loss, tuple(activations), tuple(pre_activations), tuple(deltas), tuple(grads)
    )


LAYERS = (nn.Linear, nn.Sigmoid, nn.ReLU)  # what ManualBackprop differentiates


def chain(model: nn.Module) -> list[nn.Module]:
    """The layers of a ``Sequential`` of ``LAYERS`` ending in a linear one, else ``[]``."""
    layers = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    if not isinstance(model, nn.Sequential) or not all(type(m) in LAYERS for m in layers):
        return []
    return layers if layers and isinstance(layers[-1], nn.Linear) else []


def output_delta(
    logits: Tensor, target: Tensor, output: str, loss: str
) -> tuple[Tensor, Tensor, float]:
    """``(Σ_rows loss, δ, k)`` for one-hot ``target``, where ``∂L/∂logits = k · δ / B``."""
    p = OUTPUTS[output](logits)
    g = p - target
    if loss == "cross_entropy":
        if output == "softmax":
            per_row = -(F.log_softmax(logits, dim=1) * target).sum(1)
        else:  # binary cross-entropy per class, summed over classes
            per_row = -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).sum(1)
        return per_row.sum(), g, 1.0
    if output == "softmax":
        delta = torch._softmax_backward_data(g, p, 1, p.dtype)
    else:
        delta = g * p * (1 - p)
    return g.square().sum(1).sum(), delta, 2.0


class ManualBackprop:
    """The hand-derived passes of a ``chain``, bias-augmented: a linear layer is ``A = [b W]``,
    ``U = [1 Z] Aᵀ``, ``∂L/∂A = δᵀ [1 Z]``. ``sgd_step`` is the notebook's SGD on ``A`` (``push``
    writes it back); ``gradients`` feeds an optimizer, whose update ``pull`` reads."""

    def __init__(self, model: nn.Module, output: str, loss: str, lr: float = 0.0) -> None:
        if loss not in LOSSES.get(output, {}):
            raise ValueError(f"ManualBackprop: no loss {loss!r} for output {output!r} in LOSSES")
        self.layers = chain(model)
        if not self.layers:
            raise TypeError(
                f"ManualBackprop trains chains of {', '.join(t.__name__ for t in LAYERS)} "
                "ending in a linear layer; use autograd for this model"
            )
        self.output, self.loss, self.lr = output, loss, lr
        self.weights = {i: m.weight for i, m in enumerate(self.layers) if isinstance(m, nn.Linear)}
        self.pull()  # A = [b W] of each linear layer, by its index in the chain

    @torch.no_grad()
    def pull(self) -> None:
        for i in self.weights:
            layer = self.layers[i]
            self.weights[i] = torch.cat([layer.bias.detach()[:, None], layer.weight.detach()], 1)

    @torch.no_grad()
    def push(self) -> None:
        for i, a in self.weights.items():
            self.layers[i].bias.copy_(a[:, 0])
            self.layers[i].weight.copy_(a[:, 1:])

    def _backward(
        self, x: Tensor, target: Tensor
    ) -> tuple[Tensor, dict[int, tuple[Tensor, Tensor]], float]:
        """``(Σ_rows loss, {linear layer: (δ, [1 Z])}, k)``, all from the weights before a step."""
        h, saved = x, {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, nn.Linear):
                saved[i] = F.pad(h, (1, 0), value=1.0)  # [1 Z]
                h = saved[i] @ self.weights[i].T
            elif isinstance(layer, nn.Sigmoid):
                h = saved[i] = torch.sigmoid(h)
            else:  # nn.ReLU: its input decides where the gradient flows
                saved[i], h = h, h.clamp_min(0)
        total, delta, k = output_delta(h, target, self.output, self.loss)
        found = {}
        for i in range(len(self.layers) - 1, -1, -1):
            if i in self.weights:
                found[i] = delta, saved[i]
                if i > 0:  # the input X needs no gradient
                    delta = delta @ self.weights[i][:, 1:]
            elif isinstance(self.layers[i], nn.Sigmoid):
                delta = delta * saved[i] * (1 - saved[i])
            else:
                delta = delta * (saved[i] > 0).to(delta.dtype)
        return total, found, k

    @torch.no_grad()
    def gradients(self, x: Tensor, target: Tensor, batch: int = 0) -> tuple[Tensor, list[Tensor]]:
        """This shard's share of the loss and ``∂L/∂param`` (``parameters()`` order) of a
        minibatch of ``batch`` rows (default: the shard's)."""
        batch = batch or len(x)
        total, found, k = self._backward(x, target)
        grads: list[Tensor] = []
        for i in self.weights:
            delta, rows = found[i]
            g = (delta.T @ rows).mul_(k / batch)
            grads += [g[:, 1:].contiguous(), g[:, 0].contiguous()]  # weight, bias
        return total / batch, grads

    @torch.no_grad()
    def sgd_step(self, x: Tensor, target: Tensor) -> Tensor:
        """One minibatch of the notebook's SGD on ``A``; returns its mean loss."""
        total, found, k = self._backward(x, target)
        for i, (delta, rows) in found.items():
            self.weights[i].addmm_(delta.T, rows, alpha=-k * self.lr / len(x))
        return total / len(x)
