"""The model registry: each ``train.model`` with its network, settings, size and engine.

``MODELS`` holds all the pipeline knows of a model; ``learning.params`` derives the params'
choices, size check and ``gradients: manual`` check from it, so adding a model is one builder
and one entry. Networks return logits: the output function lives with the loss (``losses``).
Builders import torch when called: download and preprocess check the params without torch.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict
from dataclasses import dataclass as plain_dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, TypeAdapter
from pydantic.dataclasses import dataclass

if TYPE_CHECKING:
    from torch import Tensor, nn

ACTIVATIONS = {"sigmoid": "Sigmoid", "relu": "ReLU"}  # train.activation -> torch.nn layer


def _dense(width: int, hidden: tuple[int, ...], activation: str, out: int) -> nn.Sequential:
    """``width -> hidden[0] -> ... -> hidden[-1] -> out``, ``activation`` between layers."""
    from torch import nn

    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), getattr(nn, ACTIVATIONS[activation])()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, out))


def _dense_weights(width: int, hidden: tuple[int, ...]) -> int:
    """Weights and biases of ``_dense``'s hidden layers (the output layer aside)."""
    return sum((a + 1) * b for a, b in itertools.pairwise((width, *hidden)))


def build_linear(in_features: int, num_classes: int) -> nn.Module:
    """The notebook's softmax-linear model, minus the softmax: ``[B, 784] -> [B, 10]``."""
    from torch import nn

    return nn.Sequential(OrderedDict(layer1=nn.Linear(in_features, num_classes)))


def build_mlp(
    in_features: int, num_classes: int, hidden: tuple[int, ...], activation: str
) -> nn.Module:
    from torch import nn

    return nn.Sequential(OrderedDict(net=_dense(in_features, hidden, activation, num_classes)))


def build_cnn(
    in_features: int,
    num_classes: int,
    hidden: tuple[int, ...],
    channels: tuple[int, ...],
    activation: str,
    kernel: int = 5,
    batch_norm: bool = False,
) -> nn.Module:
    """(conv kernel×kernel [-> batch norm] -> 2×2 max-pool -> activation) per ``channels``,
    then a dense head; padding keeps each conv's map size, so each block halves it
    (28 -> 14 -> 7). The activation follows the pool: both activations are monotone, so the
    order leaves the values as they are and the activation runs on a quarter of the map.
    ``cnn`` is LeNet-style (5×5); ``cnn_bn`` (the cnn preset's) has 3×3 convs, each
    normalised over the batch, so that it trains fast at a higher rate."""
    from torch import nn

    side = math.isqrt(in_features)
    if side * side != in_features:
        raise ValueError(f"cnn needs square images, got {in_features} features")
    image = nn.Unflatten(1, (1, side, side))
    blocks: list[nn.Module] = []
    width = 1
    for out in channels:
        conv = nn.Conv2d(width, out, kernel_size=kernel, padding=kernel // 2)
        norm = [nn.BatchNorm2d(out)] if batch_norm else []
        blocks += [conv, *norm, nn.MaxPool2d(2), getattr(nn, ACTIVATIONS[activation])()]
        width, side = out, side // 2
    head = _dense(width * side * side, hidden, activation, num_classes)
    return nn.Sequential(
        OrderedDict(
            image=image,
            features=nn.Sequential(*blocks),
            flat=nn.Flatten(1),
            head=nn.Sequential(OrderedDict(net=head)),
        )
    )


def cnn_weights(
    side: int, settings: Mapping[str, Any], kernel: int = 5, batch_norm: bool = False
) -> int:
    """Conv, norm and hidden weights; ``ValueError`` when the max-pools shrink the map to
    nothing."""
    channels, hidden = settings["channels"], settings["hidden"]
    sides = [side >> n for n in range(len(channels) + 1)]  # each 2×2 max-pool halves it
    if sides[-1] == 0:
        raise ValueError(
            f"channels: {list(channels)} is {len(channels)} conv blocks, but each 2×2 max-pool "
            f"halves the {side}×{side} image ({' -> '.join(map(str, sides))}); use at most "
            f"{side.bit_length() - 1} entries"
        )
    per_channel = 3 if batch_norm else 1  # bias, and the norm's scale and shift
    convs = sum(
        kernel * kernel * a * b + per_channel * b for a, b in itertools.pairwise((1, *channels))
    )
    return convs + _dense_weights(channels[-1] * sides[-1] ** 2, hidden)


@plain_dataclass(frozen=True)
class ModelEntry:
    """One ``train.model``: ``build(in_features, num_classes, **settings)`` makes it from the
    ``train`` keys in ``settings``; ``weights(side, settings)`` counts all but its output layer
    (``ValueError``: it cannot be built); ``manual``: the hand-derived engine trains it."""

    build: Callable[..., nn.Module]
    settings: tuple[str, ...] = ()
    weights: Callable[[int, Mapping[str, Any]], int] = lambda side, settings: 0
    manual: bool = False


MODELS: dict[str, ModelEntry] = {
    "linear": ModelEntry(build_linear, manual=True),
    "mlp": ModelEntry(
        build_mlp, ("hidden", "activation"), lambda s, c: _dense_weights(s * s, c["hidden"]), True
    ),
    "cnn": ModelEntry(build_cnn, ("hidden", "channels", "activation"), cnn_weights),
    "cnn_bn": ModelEntry(
        partial(build_cnn, kernel=3, batch_norm=True),
        ("hidden", "channels", "activation"),
        partial(cnn_weights, kernel=3, batch_norm=True),
    ),
}


def _known(registry: dict[str, Any], what: str) -> Any:
    """A validator of registry names, looked up when called (models register at run time)."""

    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {what} {name!r} (known: {', '.join(registry)})")
        return name

    return AfterValidator(check)


Size = Annotated[int, Field(ge=1)]


@dataclass(frozen=True, config={"extra": "forbid", "strict": True})
class ModelSpec:
    """What rebuilds a model and loads its weights, validated: a hand-edited model file's
    metadata cannot ask for ``num_classes: -5`` or ``1e9``."""

    name: Annotated[str, _known(MODELS, "model")]
    in_features: Size
    num_classes: Size
    hidden: tuple[Size, ...] = ()
    activation: Annotated[str, _known(ACTIVATIONS, "activation")] = "sigmoid"
    channels: tuple[Size, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return TypeAdapter(cls).validate_json(text)  # strict: JSON arrays for the tuples


def build_model(spec: ModelSpec) -> nn.Module:
    entry = MODELS[spec.name]
    return entry.build(
        spec.in_features, spec.num_classes, **{k: getattr(spec, k) for k in entry.settings}
    )


def predict_logits(model: nn.Module, images: Tensor) -> Tensor:
    """Logits ``[N, C]`` for images ``[N, 784]``, in chunks of 4096 to bound memory."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(chunk) for chunk in images.split(4096)])
    model.train(was_training)
    return out
