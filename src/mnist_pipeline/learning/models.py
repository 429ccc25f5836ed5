"""The model registry: each ``train.model`` with its network, settings, size and engine.

A model's entry in ``MODELS`` is everything the pipeline knows about it: how to build it
(``build``, returning a plain ``nn.Module`` of logits ``[B, num_classes]``), which ``train``
settings it takes, how many weights those settings make (``weights``: the params check
refuses a model too big to train before any stage starts) and whether the hand-derived
engine (``backprop.ManualBackprop``) trains it. ``learning.config`` derives ``train.model``'s
choices, the size check and the ``gradients: manual`` check from these entries, so adding
a model is one builder and one entry here.

The output function lives with the loss (``losses``), not in the model: the same network
serves MSE-on-softmax and cross-entropy, and ``argmax`` of logits is ``argmax`` of
probabilities. Builders import torch when called: the params check runs in every stage,
and download and preprocess never import torch.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict
from dataclasses import dataclass as plain_dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass

if TYPE_CHECKING:
    from torch import Tensor, nn

# train.activation -> the torch.nn layer class between hidden layers
ACTIVATIONS = {"sigmoid": "Sigmoid", "relu": "ReLU"}
KERNEL = 5  # the cnn's convolutions are KERNEL × KERNEL, padded to keep the map's size


def _activation(name: str) -> nn.Module:
    from torch import nn

    return getattr(nn, ACTIVATIONS[name])()


def _dense(width: int, hidden: tuple[int, ...], activation: str, out: int) -> nn.Sequential:
    """``width -> hidden[0] -> ... -> hidden[-1] -> out``, ``activation`` between layers."""
    from torch import nn

    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), _activation(activation)]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, out))


def _dense_weights(width: int, hidden: tuple[int, ...]) -> int:
    """Weights and biases of the hidden layers of ``_dense`` (the output layer aside)."""
    return sum((a + 1) * b for a, b in itertools.pairwise((width, *hidden)))


def build_linear(in_features: int, num_classes: int) -> nn.Module:
    """The notebook's softmax-linear model, minus the softmax: ``[B, 784] -> [B, 10]``."""
    from torch import nn

    return nn.Sequential(OrderedDict(layer1=nn.Linear(in_features, num_classes)))


def build_mlp(
    in_features: int, num_classes: int, hidden: tuple[int, ...], activation: str
) -> nn.Module:
    """Fully connected: ``in -> hidden[0] -> ... -> hidden[-1] -> num_classes``."""
    from torch import nn

    return nn.Sequential(OrderedDict(net=_dense(in_features, hidden, activation, num_classes)))


def mlp_weights(side: int, settings: Mapping[str, Any]) -> int:
    return _dense_weights(side * side, settings["hidden"])


def build_cnn(
    in_features: int,
    num_classes: int,
    hidden: tuple[int, ...],
    channels: tuple[int, ...],
    activation: str,
) -> nn.Module:
    """LeNet-style: (conv 5×5 -> act -> 2×2 max-pool) per ``channels``, then a dense head.

    Views the flat ``[B, 784]`` rows as ``[B, 1, 28, 28]``; padding 2 keeps each conv's
    output the size of its input, so the map halves per block (28 -> 14 -> 7 for two).
    """
    from torch import nn

    side = math.isqrt(in_features)
    if side * side != in_features:
        raise ValueError(f"cnn needs square images, got {in_features} features")
    blocks: list[nn.Module] = []
    width = 1
    for out in channels:
        conv = nn.Conv2d(width, out, kernel_size=KERNEL, padding=KERNEL // 2)
        blocks += [conv, _activation(activation), nn.MaxPool2d(2)]
        width, side = out, side // 2
    head = _dense(width * side * side, hidden, activation, num_classes)
    return nn.Sequential(
        OrderedDict(
            image=nn.Unflatten(1, (1, math.isqrt(in_features), math.isqrt(in_features))),
            features=nn.Sequential(*blocks),
            flat=nn.Flatten(1),
            head=nn.Sequential(OrderedDict(net=head)),
        )
    )


def cnn_weights(side: int, settings: Mapping[str, Any]) -> int:
    """Conv and hidden weights; ``ValueError`` when the max-pools shrink the map to nothing."""
    channels, hidden = settings["channels"], settings["hidden"]
    sides = [side >> n for n in range(len(channels) + 1)]  # each 2×2 max-pool halves it
    if sides[-1] == 0:
        raise ValueError(
            f"channels: {list(channels)} is {len(channels)} conv blocks, but each 2×2 max-pool "
            f"halves the {side}×{side} image ({' -> '.join(map(str, sides))}); use at most "
            f"{side.bit_length() - 1} entries"
        )
    pairs = itertools.pairwise((1, *channels))
    convs = sum(KERNEL * KERNEL * a * b + b for a, b in pairs)
    return convs + _dense_weights(channels[-1] * sides[-1] ** 2, hidden)


@plain_dataclass(frozen=True)
class ModelEntry:
    """One ``train.model``: ``build(in_features, num_classes, **settings)`` makes it;
    ``settings`` are the ``train`` keys it takes; ``weights(side, settings)`` counts the
    weights of all but its output layer (``ValueError``: these settings cannot be built);
    ``manual``: ``train.gradients: manual`` trains it (a chain of linear layers and
    activations)."""

    build: Callable[..., nn.Module]
    settings: tuple[str, ...] = ()
    weights: Callable[[int, Mapping[str, Any]], int] = lambda side, settings: 0
    manual: bool = False


MODELS: dict[str, ModelEntry] = {
    "linear": ModelEntry(build_linear, manual=True),
    "mlp": ModelEntry(build_mlp, ("hidden", "activation"), mlp_weights, manual=True),
    "cnn": ModelEntry(build_cnn, ("hidden", "channels", "activation"), cnn_weights),
}


def _known(registry: dict[str, Any], what: str) -> Callable[[str], str]:
    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {what} {name!r} (known: {', '.join(registry)})")
        return name

    return check


Size = Annotated[int, Field(ge=1)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True))
class ModelSpec:
    """Architecture of a model: enough to rebuild it and load its weights (validated, so a
    hand-edited model file's metadata cannot ask for ``num_classes: -5`` or ``1e9``)."""

    name: Annotated[str, AfterValidator(_known(MODELS, "model"))]
    in_features: Size
    num_classes: Size
    hidden: tuple[Size, ...] = ()
    activation: Annotated[str, AfterValidator(_known(ACTIVATIONS, "activation"))] = "sigmoid"
    channels: tuple[Size, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return TypeAdapter(cls).validate_json(text)  # strict: JSON arrays for the tuples


def build_model(spec: ModelSpec) -> nn.Module:
    entry = MODELS[spec.name]
    settings = {key: getattr(spec, key) for key in entry.settings}
    return entry.build(spec.in_features, spec.num_classes, **settings)


def predict_logits(model: nn.Module, images: Tensor) -> Tensor:
    """Logits ``[N, C]`` for images ``[N, 784]``, in chunks of 4096 to bound memory."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(chunk) for chunk in images.split(4096)])
    model.train(was_training)
    return out
