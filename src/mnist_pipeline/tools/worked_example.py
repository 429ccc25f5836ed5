"""The notebook's Question 1: one forward pass, backprop and one SGD step, in float64.

    python -m mnist_pipeline worked-example [--lr 0.5] [--json]

The numbers come from ``backprop.sigmoid_net_backprop``, the hand derivation, not autograd.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import torch
from torch import Tensor

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.learning.backprop import sgd_update, sigmoid_net_backprop

DTYPE = torch.float64
DEFAULT_LR = 0.1
DECIMALS = 6


def compute(lr: float = DEFAULT_LR) -> dict[str, dict[str, Any]]:
    """Every quantity, in printed order: ``{title: {label: value}}``; a label's first word is
    its JSON key."""
    x = torch.tensor([[1, 2], [2, -1], [3, 0]], dtype=DTYPE)  # the notebook's setup
    y = torch.tensor([[0], [1], [0]], dtype=DTYPE)
    w1 = torch.tensor([[0.1, -0.1], [0.2, 0], [0, 0.3]], dtype=DTYPE)
    w2 = torch.tensor([[0.05], [-0.1], [0.2]], dtype=DTYPE)
    result = sigmoid_net_backprop(x, y, [w1, w2])
    w1_next, w2_next = sgd_update([w1, w2], result.grads, lr)
    return {
        "Inputs (the notebook's setup, float64; row 0 of each W is the bias)": {
            "X [N=3, 2]": x,
            "y [3, 1]": y,
            "W1 [1+2, 2]": w1,
            "W2 [1+2, 1]": w2,
        },
        "Forward pass": {
            "U1 = [1 X] W1": result.pre_activations[0],
            "Z1 = sigmoid(U1)": result.activations[1],
            "U2 = [1 Z1] W2": result.pre_activations[1],
            "Z2 = sigmoid(U2)": result.activations[2],
            "loss = 1/(2N) sum (Z2 - y)^2": float(result.loss),
        },
        "Backward pass": {
            "delta2 = dL/dU2 = (Z2 - y) * Z2 * (1 - Z2) / N": result.deltas[1],
            "delta1 = dL/dU1 = (delta2 W2[1:]^T) * Z1 * (1 - Z1)": result.deltas[0],
            "dW2 = dL/dW2 = [1 Z1]^T delta2": result.grads[1],
            "dW1 = dL/dW1 = [1 X]^T delta1": result.grads[0],
        },
        "One SGD step": {
            "lr": lr,
            "W2_next = W2 - lr dW2": w2_next,
            "W1_next = W1 - lr dW1": w1_next,
        },
    }


def format_value(value: Tensor | float) -> str:
    """A scalar on one line; a matrix as right-aligned rows in brackets, fixed precision."""
    if not isinstance(value, Tensor):
        return f"{value:.{DECIMALS}f}"
    rows = [[f"{float(v):.{DECIMALS}f}" for v in row] for row in value.tolist()]
    width = max(len(cell) for row in rows for cell in row)
    return "\n".join("  [" + "  ".join(c.rjust(width) for c in row) + "]" for row in rows)


def render_text(sections: dict[str, dict[str, Any]]) -> str:
    """The human-readable report: each section, each labelled value."""
    lines = ["Question 1: backprop by hand for a 2-layer sigmoid network"]
    for title, values in sections.items():
        lines += ["", f"== {title} =="]
        for label, value in values.items():
            separator = "\n" if isinstance(value, Tensor) else " "
            lines.append(f"{label} ={separator}{format_value(value)}")
    return "\n".join(lines)


def to_json(sections: dict[str, dict[str, Any]]) -> str:
    """One JSON object keyed by each label's first word; matrices as nested lists of rows."""
    plain = {
        label.split()[0]: value.tolist() if isinstance(value, Tensor) else value
        for values in sections.values()
        for label, value in values.items()
    }
    return json.dumps(plain)


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="The notebook's Question 1: forward pass, hand-derived backprop and one "
        "SGD step for its 2-layer sigmoid network (float64).",
    )
    parser.add_argument(
        "--lr", type=float, default=DEFAULT_LR, help="SGD step (default %(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if not math.isfinite(args.lr):
        parser.error(f"argument --lr: must be a finite number, got {args.lr}")
    values = compute(args.lr)
    print(to_json(values) if args.json else render_text(values))


if __name__ == "__main__":
    raise SystemExit(main())
