"""The classifiers, as plain ``nn.Module``s that return logits ``[B, num_classes]``.

The notebook's ``Linear`` applied softmax inside ``forward``; here the output function
lives with the loss (``losses``) so the same model serves MSE-on-softmax and
cross-entropy, and ``argmax`` of logits equals ``argmax`` of probabilities.
``MODELS`` maps ``train.model`` to a builder; ``ModelSpec`` is what a saved model needs
to be rebuilt without ``params.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import Tensor, nn

from mnist_pipeline.errors import PipelineError
from mnist_pipeline.io import load_tensors, save_tensors

ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a model: enough to rebuild it and load its weights."""

    name: str
    in_features: int
    num_classes: int
    hidden: tuple[int, ...] = ()
    activation: str = "sigmoid"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        raw = json.loads(text)
        return cls(**{**raw, "hidden": tuple(raw.get("hidden", ()))})


class Linear(nn.Module):
    """The notebook's softmax-linear model, minus the softmax: ``[B, 784] -> [B, 10]``."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer1(x)


class MLP(nn.Module):
    """Fully connected net: ``in -> hidden[0] -> ... -> hidden[-1] -> num_classes``."""

    def __init__(
        self, in_features: int, num_classes: int, hidden: tuple[int, ...], activation: str
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATION_LAYERS[activation]()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {
    "linear": lambda spec: Linear(spec.in_features, spec.num_classes),
    "mlp": lambda spec: MLP(spec.in_features, spec.num_classes, spec.hidden, spec.activation),
}


def build_model(spec: ModelSpec) -> nn.Module:
    return MODELS[spec.name](spec)


def save_model(model: nn.Module, spec: ModelSpec, path: Path, loss: str) -> None:
    """Weights as safetensors; the spec and training loss ride along as metadata."""
    save_tensors(model.state_dict(), path, metadata={"spec": spec.to_json(), "loss": loss})


def load_model(path: Path) -> tuple[nn.Module, ModelSpec, str]:
    """Rebuild the saved architecture and load its weights: (model, spec, loss name)."""
    tensors, meta = load_tensors(path)
    try:
        spec = ModelSpec.from_json(meta["spec"])
        model = build_model(spec)
        loss = meta["loss"]
    except (KeyError, TypeError, ValueError) as err:
        raise PipelineError(
            f"{path}: no usable model description in its metadata ({err}); rerun the train stage"
        ) from err
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise PipelineError(
            f"{path}: weights do not fit the {spec.name} architecture in its metadata ({first}); "
            "rerun the train stage"
        ) from err
    return model, spec, loss
