"""The optimizer registry, and the notebook's SGD step ``p -= lr * grad``: ``torch.optim.SGD``
bit for bit (momentum, weight decay) without its per-step overhead, which dominates small steps.
torch is imported on use: every stage's params check imports this registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class SGD:
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
        """``p -= lr * g``: ``g`` the gradient (``grads``, the hand-derived engine's, or each
        ``p.grad``, then cleared) plus weight decay, through momentum."""
        import torch

        given = grads if grads is not None else [p.grad for p in self.parameters]
        with torch.no_grad():
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

    # fused: one ATen kernel under the pinned capability. The default per-tensor step takes
    # torch.sqrt, which runs MKL's vector math (VML), unpinned by MKL_CBWR: on an AMD CPU
    # its kernel starts from rsqrtps, whose bits differ between Intel and AMD CPUs.
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, fused=True)


# train.optimizer -> (parameters, lr, momentum, weight_decay) -> the optimizer
OPTIMIZERS: dict[str, Callable[..., SGD | torch.optim.Optimizer]] = {"sgd": SGD, "adam": _adam}
