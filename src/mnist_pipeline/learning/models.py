"""The classifiers, as plain ``nn.Module``s that return logits ``[B, num_classes]``.

The notebook's ``Linear`` applied softmax inside ``forward``; here the output function
lives with the loss (``losses``) so the same model serves MSE-on-softmax and
cross-entropy, and ``argmax`` of logits equals ``argmax`` of probabilities.
``MODELS`` maps ``train.model`` to a builder; ``ModelSpec`` is what a saved model needs
to be rebuilt without ``params.yaml``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import torch
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from torch import Tensor, nn

from mnist_pipeline.core.errors import PipelineError, one_line
from mnist_pipeline.core.io import load_tensors, save_tensors
from mnist_pipeline.core.params import LOSS_NAMES, OUTPUTS, Activation, ModelName

ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


Size = Annotated[int, Field(ge=1)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True))
class ModelSpec:
    """Architecture of a model: enough to rebuild it and load its weights (validated, so a
    hand-edited model file's metadata cannot ask for ``num_classes: -5`` or ``1e9``)."""

    name: ModelName
    in_features: Size
    num_classes: Size
    hidden: tuple[Size, ...] = ()
    activation: Activation = "sigmoid"
    channels: tuple[Size, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return TypeAdapter(cls).validate_json(text)  # strict: JSON arrays for the tuples


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
        layers: list[nn.Module] = []  # in -> hidden[0] -> ... -> num_classes
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATION_LAYERS[activation]()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNN(nn.Module):
    """LeNet-style: (conv 5×5 -> act -> 2×2 max-pool) per ``channels``, then an MLP head.

    Takes the flat ``[B, 784]`` rows the pipeline stores and views them as ``[B, 1, 28, 28]``;
    padding 2 keeps each conv's output the size of its input, so the map halves per block
    (28 -> 14 -> 7 for two blocks).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        channels: tuple[int, ...],
        hidden: tuple[int, ...],
        activation: str,
    ) -> None:
        super().__init__()
        self.side = math.isqrt(in_features)
        if self.side * self.side != in_features:
            raise ValueError(f"cnn needs square images, got {in_features} features")
        blocks: list[nn.Module] = []
        width, side = 1, self.side
        for out in channels:
            blocks += [
                nn.Conv2d(width, out, kernel_size=5, padding=2),
                ACTIVATION_LAYERS[activation](),
                nn.MaxPool2d(2),
            ]
            width, side = out, side // 2
        self.features = nn.Sequential(*blocks)
        self.head = MLP(width * side * side, num_classes, hidden, activation)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.features(x.view(-1, 1, self.side, self.side))  # [B, C, s, s]
        return self.head(maps.flatten(1))


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor) -> Tensor:
    """Logits ``[N, C]`` for images ``[N, 784]``, in chunks of 4096 to bound memory."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(chunk) for chunk in images.split(4096)])
    model.train(was_training)
    return out


@dataclass(frozen=True)
class ModelEntry:
    """One ``train.model``: its class, and which ``train`` settings it takes (keywords)."""

    cls: type[nn.Module]
    settings: tuple[str, ...] = ()  # ModelSpec fields copied from params.train


# A new model: its class above, an entry here, its name in core/params.py's ModelName.
MODELS: dict[str, ModelEntry] = {
    "linear": ModelEntry(Linear),
    "mlp": ModelEntry(MLP, ("hidden", "activation")),
    "cnn": ModelEntry(CNN, ("channels", "hidden", "activation")),
}


def build_model(spec: ModelSpec) -> nn.Module:
    entry = MODELS[spec.name]
    settings = {key: getattr(spec, key) for key in entry.settings}
    return entry.cls(spec.in_features, spec.num_classes, **settings)


def save_model(
    model: nn.Module,
    spec: ModelSpec,
    path: Path,
    loss: str,
    output: str,
    classes: tuple[str, ...] = (),
) -> None:
    """Weights as safetensors; the spec, loss, output function and class names ride along."""
    metadata = {"spec": spec.to_json(), "loss": loss, "output": output}
    if classes:
        metadata["classes"] = json.dumps(list(classes))
    save_tensors(model.state_dict(), path, metadata=metadata)


def _check_weights(path: Path, model: nn.Module, tensors: dict[str, Tensor]) -> None:
    """The file's tensors have exactly the names, shapes and dtype the spec's model has
    (``model`` is built on the meta device: nothing allocated), and are all finite."""
    want = model.state_dict()
    for name in [*want, *(k for k in sorted(tensors) if k not in want)]:
        have, need = tensors.get(name), want.get(name)
        if have is None or need is None or (have.dtype, have.shape) != (need.dtype, need.shape):
            found = "missing" if have is None else f"{have.dtype} {list(have.shape)}"
            expected = "nothing" if need is None else f"{need.dtype} {list(need.shape)}"
            raise PipelineError(
                f"{path}: weights do not fit the {model.__class__.__name__.lower()} "
                f"architecture in its metadata ({name}: {found}, expected {expected}); "
                "rerun the train stage"
            )
        if not bool(torch.isfinite(have).all()):
            raise PipelineError(
                f"{path}: {name} holds NaN or infinite weights; the model is unusable: "
                "rerun the train stage (lower train.lr if it diverged)"
            )


def load_model(path: Path) -> tuple[nn.Module, ModelSpec, str, str]:
    """Rebuild the saved architecture and load its weights: (model, spec, loss, output)."""
    arrays, meta = load_tensors(path)
    weights = {name: torch.from_numpy(array) for name, array in arrays.items()}
    try:
        spec = ModelSpec.from_json(meta["spec"])
        loss, output = meta["loss"], meta["output"]
        if loss not in LOSS_NAMES or output not in OUTPUTS:
            raise ValueError(
                f"loss {loss!r} / output {output!r} is not one of {LOSS_NAMES} / {OUTPUTS}"
            )
        with torch.device("meta"):
            _check_weights(path, build_model(spec), weights)
    except ValidationError as err:
        raise PipelineError(
            f"{path}: bad model description in its metadata ({one_line(err)}); "
            "rerun the train stage"
        ) from err
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        raise PipelineError(
            f"{path}: no usable model description in its metadata ({err}); rerun the train stage"
        ) from err
    model = build_model(spec)
    model.load_state_dict(weights, strict=True)  # names, shapes and dtypes checked above
    return model, spec, loss, output
