"""``python -m mnist_pipeline.tools.worked_example``: its numbers against autograd, and its CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import Tensor

from mnist_pipeline.__main__ import main as front_door
from mnist_pipeline.tools.worked_example import main

DTYPE = torch.float64
TOL = {"atol": 1e-12, "rtol": 1e-10}


def autograd_reference() -> dict[str, Tensor]:
    """The notebook's setup differentiated by autograd (no code shared with the module)."""
    x = torch.tensor([[1, 2], [2, -1], [3, 0]], dtype=DTYPE)
    y = torch.tensor([[0], [1], [0]], dtype=DTYPE)
    w1 = torch.tensor([[0.1, -0.1], [0.2, 0], [0, 0.3]], dtype=DTYPE, requires_grad=True)
    w2 = torch.tensor([[0.05], [-0.1], [0.2]], dtype=DTYPE, requires_grad=True)
    ones = torch.ones(3, 1, dtype=DTYPE)
    z1 = torch.sigmoid(torch.cat([ones, x], 1) @ w1)
    z2 = torch.sigmoid(torch.cat([ones, z1], 1) @ w2)
    loss = ((z2 - y) ** 2).sum() / (2 * 3)
    loss.backward()
    return {
        "loss": loss.detach(),
        "W1": w1.detach(),
        "W2": w2.detach(),
        "dW1": w1.grad,
        "dW2": w2.grad,
        "Z2": z2.detach(),
    }


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["--json", *args]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # one JSON object
    return json.loads(out)


def as_tensor(value: Any) -> Tensor:
    return torch.tensor(value, dtype=DTYPE)


def test_json_matches_autograd(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys)
    ref = autograd_reference()
    assert abs(data["loss"] - float(ref["loss"])) < 1e-12
    assert as_tensor(data["dW1"]).shape == (3, 2)
    assert as_tensor(data["dW2"]).shape == (3, 1)
    torch.testing.assert_close(as_tensor(data["dW1"]), ref["dW1"], **TOL)
    torch.testing.assert_close(as_tensor(data["dW2"]), ref["dW2"], **TOL)
    torch.testing.assert_close(as_tensor(data["Z2"]), ref["Z2"], **TOL)
    assert data["lr"] == 0.1
    torch.testing.assert_close(as_tensor(data["W1_next"]), ref["W1"] - 0.1 * ref["dW1"], **TOL)
    torch.testing.assert_close(as_tensor(data["W2_next"]), ref["W2"] - 0.1 * ref["dW2"], **TOL)
    for key in ("delta1", "delta2", "U1", "Z1", "U2"):
        assert key in data


def test_lr_changes_the_step(capsys: pytest.CaptureFixture[str]) -> None:
    default = run_json(capsys)
    data = run_json(capsys, "--lr", "0.5")
    ref = autograd_reference()
    assert data["lr"] == 0.5
    assert data["dW1"] == default["dW1"]  # the gradient does not depend on lr
    torch.testing.assert_close(as_tensor(data["W1_next"]), ref["W1"] - 0.5 * ref["dW1"], **TOL)
    torch.testing.assert_close(as_tensor(data["W2_next"]), ref["W2"] - 0.5 * ref["dW2"], **TOL)
    assert data["W1_next"] != default["W1_next"]


def test_text_output_names_every_quantity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for label in (
        "X ",
        "y ",
        "W1 ",
        "W2 ",
        "U1 =",
        "Z1 =",
        "U2 =",
        "Z2 =",
        "loss =",
        "delta2 =",
        "delta1 =",
        "dW2 =",
        "dW1 =",
        "lr =",
        "W1_next =",
        "W2_next =",
    ):
        assert label in out, label
    loss = float(autograd_reference()["loss"])
    assert f"{loss:.6f}" in out


def test_rejects_non_finite_lr(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--lr", "nan"])
    assert exc.value.code == 2
    assert "finite" in capsys.readouterr().err


def test_module_runs_as_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m mnist_pipeline worked-example --json``, through the front door's main."""
    assert front_door(["worked-example", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["loss"] - float(autograd_reference()["loss"])) < 1e-12
