"""Backpropagation written out from the derivation: explicit matrix products, no autograd.

The notebook's Question 1 derives it for a bias-augmented sigmoid network; the tests hold
it against autograd (docs/backprop.md). Layer ``l`` has ``W_l`` ``[1 + d_{l-1}, d_l]``,
its first row the bias, ``Z_0 = X``::

    U_l = [1 Z_{l-1}] W_l,   Z_l = σ(U_l),   L = 1/(2N) Σ_i Σ_k (Z_L - Y)²
    δ_L = (Z_L - Y) ⊙ Z_L ⊙ (1 - Z_L) / N    δ_l = (δ_{l+1} W_{l+1}[1:]ᵀ) ⊙ Z_l ⊙ (1 - Z_l)
    ∂L/∂W_l = [1 Z_{l-1}]ᵀ δ_l               W_l <- W_l - lr ∂L/∂W_l

``ManualBackprop`` runs the same recursion on the registry's ``manual`` models (PyTorch
layout ``u = z Wᵀ + b``: ``∂L/∂W = δᵀ z``, ``∂L/∂b = Σ_rows δ``) from ``∂L/∂logits`` of
each output and loss of ``losses.LOSSES``; ``NotebookEpoch`` is the notebook's own setup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_pipeline.learning.losses import LOSSES, OUTPUTS


@dataclass(frozen=True)
class BackpropResult:
    """One forward + backward pass of ``sigmoid_net_backprop``, every layer's values."""

    loss: Tensor  # 0-d
    activations: tuple[Tensor, ...]  # Z_l: [N, d_l], l = 0..L
    pre_activations: tuple[Tensor, ...]  # U_l: [N, d_l], l = 1..L
    deltas: tuple[Tensor, ...]  # δ_l = ∂L/∂U_l: [N, d_l], l = 1..L
    grads: tuple[Tensor, ...]  # ∂L/∂W_l: [1 + d_{l-1}, d_l], l = 1..L


def with_bias_column(z: Tensor) -> Tensor:
    """``[N, d] -> [N, 1 + d]``: the ``[1 Z]`` of the notebook (a leading column of ones)."""
    return torch.cat([torch.ones_like(z[:, :1]), z], dim=1)


@torch.no_grad()
def sigmoid_net_backprop(x: Tensor, y: Tensor, weights: Sequence[Tensor]) -> BackpropResult:
    """The sigmoid network's forward and backward pass: ``x [N, d_0]``, targets ``y [N, d_L]``
    in [0, 1], ``weights[l-1] = W_l``; every layer sigmoid, the loss the notebook's."""
    if x.dim() != 2 or not weights:
        raise ValueError(f"x must be [N, d_0] and weights hold a matrix, got {tuple(x.shape)}")
    width = x.shape[1]
    for index, w in enumerate(weights, 1):
        if w.dim() != 2 or w.shape[0] != 1 + width:
            raise ValueError(
                f"W{index} must be [1 + {width}, fan_out] (first row = bias), got {tuple(w.shape)}"
            )
        width = w.shape[1]
    if tuple(y.shape) != (x.shape[0], width):
        raise ValueError(f"y must be [{x.shape[0]}, {width}], got shape {tuple(y.shape)}")
    n = x.shape[0]
    activations, pre_activations = [x], []
    for w in weights:
        pre_activations.append(with_bias_column(activations[-1]) @ w)
        activations.append(torch.sigmoid(pre_activations[-1]))
    z_out = activations[-1]
    loss = (z_out - y).pow(2).sum() / (2 * n)
    # ∂L/∂Z_L = (Z_L - Y)/N: the 1/2 cancels the square's 2.
    delta = (z_out - y) * z_out * (1 - z_out) / n
    deltas, grads = [delta], []
    for layer in range(len(weights), 0, -1):  # layer = L, ..., 1
        z_in = activations[layer - 1]
        grads.insert(0, with_bias_column(z_in).T @ delta)
        if layer > 1:  # row 0 of W_l is the bias: it multiplies the constant 1, not Z_{l-1}
            delta = (delta @ weights[layer - 1][1:].T) * z_in * (1 - z_in)
            deltas.insert(0, delta)
    return BackpropResult(
        loss, tuple(activations), tuple(pre_activations), tuple(deltas), tuple(grads)
    )


def sgd_update(weights: Sequence[Tensor], grads: Sequence[Tensor], lr: float) -> list[Tensor]:
    """One SGD step ``W_l - lr ∂L/∂W_l`` for every layer, as new tensors (inputs untouched)."""
    return [w - lr * g for w, g in zip(weights, grads, strict=True)]


LAYERS = (nn.Linear, nn.Sigmoid, nn.ReLU)  # what ManualBackprop differentiates


def chain(model: nn.Module) -> list[nn.Module]:
    """The model's layers in forward order if it is a ``Sequential`` of ``LAYERS`` ending in
    a linear layer (what ``ManualBackprop`` trains), else ``[]``."""
    if not isinstance(model, nn.Sequential):
        return []
    layers = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    if not layers or not all(type(m) in LAYERS for m in layers):
        return []
    return layers if isinstance(layers[-1], nn.Linear) else []


def output_delta(
    logits: Tensor, target: Tensor, output: str, loss: str
) -> tuple[Tensor, Tensor, float]:
    """``(Σ_rows loss, δ, k)`` for one-hot ``target [B, C]``: the batch's mean loss has
    ``∂L/∂logits = k · δ / B``. With ``g = p - Y``: mse under softmax has δ = ``p ⊙ (g - Σ_k
    p_k g_k)`` (softmax's own backward kernel), under sigmoid ``g ⊙ p ⊙ (1 - p)``, k = 2;
    cross-entropy has δ = ``g``, k = 1 (log_softmax, logsigmoid: finite for any logit)."""
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
    """The hand-derived forward and backward pass of a ``chain``, in the notebook's
    bias-augmented form: each linear layer is ``A = [b W]`` ``[out, 1 + in]`` applied to
    ``[1 Z]``, so ``U = [1 Z] Aᵀ`` and ``∂L/∂A = δᵀ [1 Z]``.

    ``sgd_step`` is the notebook's update (plain SGD, one process): ``A -= lr · k/B · δᵀ [1 Z]``
    in one ``addmm_`` per layer, written back to the model by ``push``. ``gradients`` gives an
    optimizer each parameter's gradient instead; ``pull`` then reads its update back.
    """

    def __init__(self, model: nn.Module, output: str, loss: str, lr: float = 0.0) -> None:
        if loss not in LOSSES.get(output, {}):
            raise ValueError(
                f"ManualBackprop: unknown output {output!r} or loss {loss!r}; choose an "
                f"output and loss of losses.LOSSES ({ {o: list(ls) for o, ls in LOSSES.items()} })"
            )
        self.layers = chain(model)
        if not self.layers:
            raise TypeError(
                f"ManualBackprop trains chains of {', '.join(t.__name__ for t in LAYERS)} "
                "ending in a linear layer; use autograd for this model"
            )
        self.output, self.loss, self.lr = output, loss, lr
        self.linear = [i for i, m in enumerate(self.layers) if isinstance(m, nn.Linear)]
        self.weights: dict[int, Tensor] = {}
        self.rows: dict[tuple[int, int], Tensor] = {}  # (layer, batch) -> [1 Z], column 0 ones
        self.pull()

    @torch.no_grad()
    def pull(self) -> None:
        """``A = [b W]`` of every linear layer, from the model."""
        for i in self.linear:
            layer = self.layers[i]
            self.weights[i] = torch.cat([layer.bias.detach()[:, None], layer.weight.detach()], 1)

    @torch.no_grad()
    def push(self) -> None:
        """The model's ``b`` and ``W`` from ``A``."""
        for i in self.linear:
            self.layers[i].bias.copy_(self.weights[i][:, 0])
            self.layers[i].weight.copy_(self.weights[i][:, 1:])

    def _with_ones(self, layer: int, z: Tensor) -> Tensor:
        rows = self.rows.get((layer, len(z)))
        if rows is None:
            rows = self.rows[layer, len(z)] = z.new_ones(len(z), 1 + z.shape[1])
        rows[:, 1:].copy_(z)
        return rows

    def _backward(
        self, x: Tensor, target: Tensor
    ) -> tuple[Tensor, dict[int, tuple[Tensor, Tensor]], float]:
        """``(Σ_rows loss, {linear layer: (δ, [1 Z])}, k)``, every δ from the weights before the
        step."""
        h, saved = x, {}
        for i, layer in enumerate(self.layers):
            if isinstance(layer, nn.Linear):
                saved[i] = self._with_ones(i, h)
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
        """This batch's share of the loss and ``∂L/∂param`` in ``parameters()`` order for ``x
        [b, in]`` and one-hot ``target [b, C]``, of a minibatch of ``batch`` rows (default b)."""
        batch = batch or len(x)
        total, found, k = self._backward(x, target)
        grads: list[Tensor] = []
        for i in self.linear:
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
