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

from mnist_pipeline.learning.losses import LOSSES
from mnist_pipeline.learning.optim import SGD


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
    updated = [w.clone() for w in weights]
    SGD(updated, lr).step(grads)
    return updated


class NotebookEpoch:
    """The notebook's training (softmax-linear model, MSE, plain SGD), one epoch at a time in
    its bias-augmented notation: ``A = [b W]`` ``[C, 1 + D]``, batches gathered as ``[1 X]``.

    The same math as ``ManualBackprop`` + ``optim.SGD`` (the tests hold them together); per
    step, with ``g = p - Y``::

        p  = softmax([1 X] Aᵀ)
        δ  = p ⊙ (g - Σ_k p_k g_k)                   the softmax Jacobian applied to g
        A -= lr · (2/B) · δᵀ [1 X]

    The losses ``Σ_rows Σ_k g² / B`` come once per epoch from the kept ``g`` rows.
    """

    @staticmethod
    def fits(model: nn.Module, output: str, loss: str) -> bool:
        layers = chain(model)
        one_layer = len(layers) == 1 and isinstance(layers[0], nn.Linear)
        return one_layer and (output, loss) == ("softmax", "mse")

    def __init__(self, model: nn.Module, lr: float, batch_size: int, n: int) -> None:
        (layer,) = chain(model)
        self.layer, self.lr, self.batch_size = layer, lr, batch_size
        self.augmented = torch.cat([layer.bias.detach()[:, None], layer.weight.detach()], 1)
        self.residual = layer.weight.new_empty(n, layer.out_features)  # g rows, epoch order
        steps = -(-n // batch_size)
        self.padding = steps * batch_size - n  # the last batch may be short ...
        self.sizes = layer.weight.new_full((steps,), batch_size)
        self.sizes[-1] -= self.padding  # ... and its loss is its own mean
        self.buffers = {}  # per batch size: [1 X] rows (column 0 stays 1), their X part, Y rows
        for size in {batch_size, batch_size - self.padding}:
            rows = layer.weight.new_ones(size, 1 + layer.in_features)
            target = layer.weight.new_empty(size, layer.out_features)
            self.buffers[size] = rows, rows[:, 1:], target

    @torch.no_grad()
    def __call__(self, x: Tensor, target: Tensor, order: Tensor) -> Tensor:
        """One epoch on ``x [N, D]``, one-hot ``target [N, C]`` in ``order``: step losses."""
        a, a_t = self.augmented, self.augmented.T  # a_t: a [1 + D, C] view of the live A
        steps = order.split(self.batch_size), self.residual.split(self.batch_size)
        for idx, g in zip(*steps, strict=True):
            rows, features, y = self.buffers[len(idx)]
            torch.index_select(x, 0, idx, out=features)  # fills [1 X] next to the ones
            torch.index_select(target, 0, idx, out=y)
            p = torch.softmax(rows @ a_t, dim=1)
            torch.sub(p, y, out=g)
            delta = torch._softmax_backward_data(g, p, 1, p.dtype)  # p ⊙ (g - Σ_k p_k g_k)
            a.addmm_(delta.T, rows, alpha=-2.0 * self.lr / len(idx))
        self.layer.bias.copy_(a[:, 0])
        self.layer.weight.copy_(a[:, 1:])
        per_row = F.pad(self.residual.square().sum(1), (0, self.padding))  # [S * B]: Σ_k g²
        return per_row.view(len(self.sizes), -1).sum(1) / self.sizes


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


def _loss_and_logit_grad(
    logits: Tensor, target: Tensor, output: str, loss: str
) -> tuple[Tensor, Tensor]:
    """The loss (0-d) and ``∂L/∂logits`` ``[B, C]`` for one-hot ``target [B, C]``."""
    batch = logits.shape[0]
    p = torch.softmax(logits, dim=1) if output == "softmax" else torch.sigmoid(logits)
    if loss == "cross_entropy":  # log_softmax and logsigmoid(±z), not log(p): finite for any z
        if output == "softmax":
            value = -(torch.log_softmax(logits, dim=1) * target).sum(1).mean()
        else:  # binary cross-entropy per class, summed over classes
            per_class = target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)
            value = -per_class.sum(1).mean()
        return value, (p - target) / batch
    g = p - target
    if output == "softmax":  # ∂L/∂z_j = (2/B) p_j (g_j - Σ_k p_k g_k): softmax's own kernel
        grad = torch._softmax_backward_data(g, p, 1, p.dtype).mul_(2.0 / batch)
        return g.square().sum() / batch, grad
    return g.pow(2).sum(1).mean(), 2 / batch * g * p * (1 - p)  # σ' = p(1 - p)


class ManualBackprop:
    """The hand-derived forward + backward pass of a ``chain``, built once per model."""

    def __init__(self, model: nn.Module, output: str, loss: str) -> None:
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
        # W^T views [in, out] made once: they follow the in-place updates of W.
        self.transposed = {
            i: layer.weight.T for i, layer in enumerate(self.layers) if isinstance(layer, nn.Linear)
        }
        self.output, self.loss = output, loss

    def gradients(self, x: Tensor, target: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Loss and ``∂L/∂param`` in ``parameters()`` order, for ``x [B, in]`` and one-hot
        ``target [B, C]``; call it under ``torch.no_grad()``."""
        # Forward, keeping what each backward step needs: a Linear's input z (∂L/∂W = δᵀ z),
        # a Sigmoid's output z (σ' = z(1 - z)), a ReLU's input u (relu' = [u > 0]).
        h = x
        saved: list[Tensor] = []
        for index, layer in enumerate(self.layers):
            saved.append(h if not isinstance(layer, nn.Sigmoid) else torch.sigmoid(h))
            if isinstance(layer, nn.Linear):
                h = torch.addmm(layer.bias, h, self.transposed[index])
            elif isinstance(layer, nn.Sigmoid):
                h = saved[-1]
            else:  # nn.ReLU
                h = h.clamp_min(0)
        value, delta = _loss_and_logit_grad(h, target, self.output, self.loss)
        # Backward: delta is ∂L/∂(output of the current layer).
        grads: list[Tensor] = []
        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            if isinstance(layer, nn.Linear):
                grads[:0] = delta.T @ saved[index], delta.sum(0)  # weight, bias: parameters()
                if index > 0:  # the input X needs no gradient
                    delta = delta @ layer.weight
            elif isinstance(layer, nn.Sigmoid):
                z = saved[index]
                delta = delta * z * (1 - z)
            else:  # nn.ReLU
                delta = delta * (saved[index] > 0).to(delta.dtype)
        return value, grads
