"""The notebook's Question 1 worked through: one forward pass, backprop and one SGD step.

Run it from the repository root (or anywhere, once the package is installed)::

    python -m mnist_pipeline worked-example             # labelled matrices
    python -m mnist_pipeline worked-example --lr 0.5    # another step size
    python -m mnist_pipeline worked-example --json      # one JSON object

The setup is the notebook's, in float64: ``X`` is ``[3, 2]``, ``y`` is ``[3, 1]``,
``W1`` is ``[1 + 2, 2]`` and ``W2`` is ``[1 + 2, 1]`` (first row of each = bias). The
numbers come from ``backprop.sigmoid_net_backprop``, i.e. the hand derivation, not
autograd; the tests check them against autograd.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import torch
from torch import Tensor

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.learning.backprop import BackpropResult, sgd_update, sigmoid_net_backprop

DTYPE = torch.float64
DEFAULT_LR = 0.1
DECIMALS = 6


def notebook_setup() -> dict[str, Tensor]:
    """The notebook's ``X``, ``y``, ``W1``, ``W2`` as float64 tensors."""
    return {
        "X": torch.tensor([[1, 2], [2, -1], [3, 0]], dtype=DTYPE),
        "y": torch.tensor([[0], [1], [0]], dtype=DTYPE),
        "W1": torch.tensor([[0.1, -0.1], [0.2, 0], [0, 0.3]], dtype=DTYPE),
        "W2": torch.tensor([[0.05], [-0.1], [0.2]], dtype=DTYPE),
    }


def compute(lr: float = DEFAULT_LR) -> dict[str, Any]:
    """Every quantity of the worked example as tensors/floats, keyed like the JSON output."""
    setup = notebook_setup()
    weights = [setup["W1"], setup["W2"]]
    result: BackpropResult = sigmoid_net_backprop(setup["X"], setup["y"], weights)
    w1_next, w2_next = sgd_update(weights, result.grads, lr)
    return {
        **setup,
        "U1": result.pre_activations[0],
        "Z1": result.activations[1],
        "U2": result.pre_activations[1],
        "Z2": result.activations[2],
        "loss": float(result.loss),
        "delta2": result.deltas[1],
        "delta1": result.deltas[0],
        "dW2": result.grads[1],
        "dW1": result.grads[0],
        "lr": lr,
        "W2_next": w2_next,
        "W1_next": w1_next,
    }


# Each label in the order printed, starting with its key; the rest says what the value is.
SECTIONS: dict[str, tuple[str, ...]] = {
    "Inputs (the notebook's setup, float64; row 0 of each W is the bias)": (
        "X [N=3, 2]",
        "y [3, 1]",
        "W1 [1+2, 2]",
        "W2 [1+2, 1]",
    ),
    "Forward pass": (
        "U1 = [1 X] W1",
        "Z1 = sigmoid(U1)",
        "U2 = [1 Z1] W2",
        "Z2 = sigmoid(U2)",
        "loss = 1/(2N) sum (Z2 - y)^2",
    ),
    "Backward pass": (
        "delta2 = dL/dU2 = (Z2 - y) * Z2 * (1 - Z2) / N",
        "delta1 = dL/dU1 = (delta2 W2[1:]^T) * Z1 * (1 - Z1)",
        "dW2 = dL/dW2 = [1 Z1]^T delta2",
        "dW1 = dL/dW1 = [1 X]^T delta1",
    ),
    "One SGD step": ("lr", "W2_next = W2 - lr dW2", "W1_next = W1 - lr dW1"),
}


def format_value(value: Tensor | float) -> str:
    """A scalar on one line; a matrix as right-aligned rows in brackets, fixed precision."""
    if not isinstance(value, Tensor):
        return f"{value:.{DECIMALS}f}"
    rows = [[f"{float(v):.{DECIMALS}f}" for v in row] for row in value.tolist()]
    width = max(len(cell) for row in rows for cell in row)
    return "\n".join("  [" + "  ".join(c.rjust(width) for c in row) + "]" for row in rows)


def render_text(values: dict[str, Any]) -> str:
    """The human-readable report: each section, each labelled value."""
    lines: list[str] = ["Question 1: backprop by hand for a 2-layer sigmoid network"]
    for title, labels in SECTIONS.items():
        lines += ["", f"== {title} =="]
        for label in labels:
            value = values[label.split()[0]]
            separator = "\n" if isinstance(value, Tensor) else " "
            lines.append(f"{label} ={separator}{format_value(value)}")
    return "\n".join(lines)


def to_json(values: dict[str, Any]) -> str:
    """One JSON object: matrices as nested lists (rows as in the notebook), scalars as numbers."""
    plain = {k: v.tolist() if isinstance(v, Tensor) else v for k, v in values.items()}
    return json.dumps(plain)


def _learning_rate(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline worked-example",
        description="The notebook's Question 1: forward pass, hand-derived backprop and one "
        "SGD step for its 2-layer sigmoid network (float64).",
    )
    parser.add_argument(
        "--lr", type=_learning_rate, default=DEFAULT_LR, help=f"SGD step (default {DEFAULT_LR})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    values = compute(args.lr)
    print(to_json(values) if args.json else render_text(values))


if __name__ == "__main__":
    raise SystemExit(main())
