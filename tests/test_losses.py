"""losses: the notebook's own check, one-hot, and the logits-based registry."""

import pytest
import torch
import torch.nn.functional as F

from mnist_pipeline.learning.losses import LOSSES, OUTPUTS, mse, one_hot
from mnist_pipeline.learning.training import accuracy


def test_notebook_check_values() -> None:
    """The notebook prints `loss = 0.4749999940395355 acc = 0.5` for exactly this input."""
    yhat = torch.tensor(
        [[0.2, 0.8, 0.1, 0, 0, 0, 0, 0, 0, 0], [0.6, 0.3, 0.1, 0, 0, 0, 0, 0, 0, 0]]
    )
    y = torch.tensor([1, 1])
    loss = mse(yhat, y)
    assert loss.dtype == torch.float32
    assert loss.item() == 0.4749999940395355
    assert accuracy(yhat, y) == 0.5


def test_one_hot_matches_torch_eye() -> None:
    labels = torch.tensor([3, 0, 9])
    assert torch.equal(one_hot(labels, 10), torch.eye(10)[labels])


def test_mse_from_logits_is_mse_of_softmax() -> None:
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4])
    assert torch.allclose(LOSSES["softmax"]["mse"](logits, y), mse(torch.softmax(logits, 1), y))


def test_each_output_has_one_function_and_its_losses() -> None:
    """``train.output`` maps to its function in OUTPUTS, and every output has its losses."""
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(2))
    assert set(OUTPUTS) == set(LOSSES)
    assert torch.equal(OUTPUTS["softmax"](logits), torch.softmax(logits, dim=1))
    assert torch.equal(OUTPUTS["sigmoid"](logits), torch.sigmoid(logits))
    y = torch.tensor([0, 1, 2, 3])
    for output, function in OUTPUTS.items():
        assert torch.equal(LOSSES[output]["mse"](logits, y), mse(function(logits), y))


def test_cross_entropy_registry_entry() -> None:
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([9, 1, 2, 3, 4])
    assert torch.allclose(LOSSES["softmax"]["cross_entropy"](logits, y), F.cross_entropy(logits, y))


@pytest.mark.parametrize("name", sorted(LOSSES["softmax"]))
def test_losses_are_zero_ish_for_confident_right_answers(name: str) -> None:
    y = torch.tensor([2, 7])
    logits = 50.0 * one_hot(y, 10)
    assert LOSSES["softmax"][name](logits, y).item() < 1e-6
    assert LOSSES["softmax"][name](-logits, y).item() > 0.5
