"""``python -m mnist_pipeline worked-example``: the notebook's Question 1, a forward pass, the
backward pass derived by hand (not autograd) and one SGD step, in float64."""

from __future__ import annotations

import argparse
import functools
import json
import math

import numpy as np
import torch
from torch import Tensor

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.learning.backprop import sigmoid_net_backprop

f64 = functools.partial(torch.tensor, dtype=torch.float64)


def question_1(lr: float) -> dict[str, dict[str, Tensor | float]]:
    """Every quantity, ``{section: {label: value}}``; a label's first word is its JSON key."""
    x, y = f64([[1, 2], [2, -1], [3, 0]]), f64([[0], [1], [0]])  # the notebook's setup
    w1, w2 = f64([[0.1, -0.1], [0.2, 0], [0, 0.3]]), f64([[0.05], [-0.1], [0.2]])
    net = sigmoid_net_backprop(x, y, [w1, w2])
    return {
        "Inputs (the notebook's setup, float64; row 0 of each W is the bias)": {
            "X [N=3, 2]": x,
            "y [3, 1]": y,
            "W1 [1+2, 2]": w1,
            "W2 [1+2, 1]": w2,
        },
        "Forward pass": {
            "U1 = [1 X] W1": net.pre_activations[0],
            "Z1 = sigmoid(U1)": net.activations[1],
            "U2 = [1 Z1] W2": net.pre_activations[1],
            "Z2 = sigmoid(U2)": net.activations[2],
            "loss = 1/(2N) sum (Z2 - y)^2": float(net.loss),
        },
        "Backward pass": {
            "delta2 = dL/dU2 = (Z2 - y) * Z2 * (1 - Z2) / N": net.deltas[1],
            "delta1 = dL/dU1 = (delta2 W2[1:]^T) * Z1 * (1 - Z1)": net.deltas[0],
            "dW2 = dL/dW2 = [1 Z1]^T delta2": net.grads[1],
            "dW1 = dL/dW1 = [1 X]^T delta1": net.grads[0],
        },
        "One SGD step": {
            "lr": lr,
            "W2_next = W2 - lr dW2": w2 - lr * net.grads[1],
            "W1_next = W1 - lr dW1": w1 - lr * net.grads[0],
        },
    }


def as_text(sections: dict[str, dict[str, Tensor | float]]) -> str:
    """Each section under its title, six decimals; a matrix on the lines below its label."""
    lines = ["Question 1: backprop by hand for a 2-layer sigmoid network"]
    with np.printoptions(precision=6, floatmode="fixed"):
        for title, values in sections.items():
            lines += ["", f"== {title} =="]
            for label, value in values.items():
                shown = f"\n{value.numpy()}" if isinstance(value, Tensor) else f" {value:.6f}"
                lines.append(f"{label} ={shown}")
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="The notebook's Question 1 in float64: forward pass, backprop by hand, a step"
    )
    parser.add_argument("--lr", type=float, default=0.1, help="SGD step (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if not math.isfinite(args.lr):
        parser.error(f"argument --lr: must be a finite number, got {args.lr}")
    sections = question_1(args.lr)
    flat = {label.split()[0]: v for values in sections.values() for label, v in values.items()}
    as_json = {k: v.tolist() if isinstance(v, Tensor) else v for k, v in flat.items()}
    print(json.dumps(as_json) if args.json else as_text(sections))
