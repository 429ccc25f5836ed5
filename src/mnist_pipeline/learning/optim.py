"""The notebook's SGD step ``p -= lr * grad``: the one parameter update of the project.

``SGD.step(grads)`` updates every parameter in place; with momentum or weight decay it
follows ``torch.optim.SGD`` (``g += wd * p``; ``buf = m * buf + g``; ``p -= lr * buf``)
bit for bit (tests hold both). It takes the gradients as an argument (the hand-derived
engine computes them) or reads ``p.grad`` (autograd), and clears ``p.grad`` afterwards.
It exists instead of ``torch.optim.SGD`` because that one's per-step overhead dominates
small steps. (The notebook's own setup has a fused step: ``backprop.NotebookEpoch``.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class SGD:
    """The notebook's step, with optional momentum and weight decay (see the module doc)."""

    def __init__(
        self,
        parameters: Sequence[Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        self.parameters = list(parameters)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[Tensor | None] = [None] * len(self.parameters)

    def step(self, grads: Sequence[Tensor | None] | None = None) -> None:
        """``p -= lr * grad`` for every parameter; ``grads`` defaults to each ``p.grad``,
        cleared after the step. The direction is ``torch.optim.SGD``'s: the gradient plus
        weight decay, through momentum."""
        import torch

        with torch.no_grad():
            self._step(grads)

    def _step(self, grads: Sequence[Tensor | None] | None) -> None:
        given = grads if grads is not None else [p.grad for p in self.parameters]
        for i, (p, g) in enumerate(zip(self.parameters, given, strict=True)):
            if g is None:
                continue
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            if self.momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(g)
                g = buf
            p.sub_(g, alpha=self.lr)
            if grads is None:
                p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """The momentum buffers (what a resumed run needs besides the weights and ``lr``)."""
        return {"buffers": [None if b is None else b.clone() for b in self.buffers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffers = [
            None if b is None else b.to(p.device, copy=True)
            for b, p in zip(state["buffers"], self.parameters, strict=True)
        ]


def _adam(parameters: Sequence[Tensor], lr: float, momentum: float, weight_decay: float) -> Any:
    import torch

    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)


# train.optimizer -> (parameters, lr, momentum, weight_decay) -> the optimizer: SGD's
# ``step(grads)`` takes the hand-derived engine's gradients, torch's optimizers ``p.grad``.
OPTIMIZERS: dict[str, Callable[..., SGD | torch.optim.Optimizer]] = {"sgd": SGD, "adam": _adam}
