"""The model registry: a model is one builder and one entry, from which the params derive
their checks. Networks return logits; torch loads when a builder runs."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter
from pydantic.dataclasses import dataclass

if TYPE_CHECKING:
    from torch import Tensor, nn

ACTIVATIONS = {"sigmoid": "Sigmoid", "relu": "ReLU"}  # train.activation -> torch.nn layer


def build_mlp(
    in_features: int, num_classes: int, hidden: tuple[int, ...], activation: str
) -> nn.Module:
    from torch import nn

    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_features, size), getattr(nn, ACTIVATIONS[activation])()]
        in_features = size
    return nn.Sequential(
        OrderedDict(net=nn.Sequential(*layers, nn.Linear(in_features, num_classes)))
    )


def mlp_weights(width: int, hidden: tuple[int, ...]) -> int:
    return sum((a + 1) * b for a, b in itertools.pairwise((width, *hidden)))


def build_linear(in_features: int, num_classes: int) -> nn.Module:
    """The notebook's softmax-linear model, minus the softmax: ``[B, 784] -> [B, 10]``."""
    from torch import nn

    return nn.Sequential(OrderedDict(layer1=nn.Linear(in_features, num_classes)))


def build_cnn(
    in_features: int,
    num_classes: int,
    hidden: tuple[int, ...],
    channels: tuple[int, ...],
    activation: str,
    kernel: int = 5,
    batch_norm: bool = False,
) -> nn.Module:
    """Per ``channels`` conv [-> batch norm] -> 2×2 max-pool -> activation (after the pool: same
    values, a quarter of the work), then an mlp head."""
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
    head = build_mlp(width * side * side, num_classes, hidden, activation)
    return nn.Sequential(
        OrderedDict(image=image, features=nn.Sequential(*blocks), flat=nn.Flatten(1), head=head)
    )


def cnn_weights(
    side: int, settings: Mapping[str, Any], kernel: int = 5, batch_norm: bool = False
) -> int:
    """Conv, norm and hidden weights; ``ValueError`` when the max-pools leave no map."""
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
    return convs + mlp_weights(channels[-1] * sides[-1] ** 2, hidden)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """``build(in_features, num_classes, **settings)``; ``weights``: all but the output layer's
    (``ValueError``: cannot be built); ``manual``: the hand-derived engine trains it."""

    build: Callable[..., nn.Module]
    settings: tuple[str, ...] = ()
    weights: Callable[[int, Mapping[str, Any]], int] = lambda side, settings: 0
    manual: bool = False


MODELS: dict[str, ModelEntry] = {
    "linear": ModelEntry(build_linear, manual=True),
    "mlp": ModelEntry(
        build_mlp, ("hidden", "activation"), lambda s, c: mlp_weights(s * s, c["hidden"]), True
    ),
    "cnn": ModelEntry(build_cnn, ("hidden", "channels", "activation"), cnn_weights),
    "cnn_bn": ModelEntry(
        partial(build_cnn, kernel=3, batch_norm=True),
        ("hidden", "channels", "activation"),
        partial(cnn_weights, kernel=3, batch_norm=True),
    ),
}


def _registered(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    return name


Size = Annotated[int, Field(ge=1)]


@dataclass(frozen=True, config={"extra": "forbid", "strict": True})
class ModelSpec:
    """What rebuilds a model, validated: a hand-edited model file cannot ask for 1e9 classes."""

    name: Annotated[str, AfterValidator(_registered)]
    in_features: Size
    num_classes: Size
    hidden: tuple[Size, ...] = ()
    activation: Literal[tuple(ACTIVATIONS)] = "sigmoid"
    channels: tuple[Size, ...] = ()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return TypeAdapter(cls).validate_json(text)  # strict: JSON arrays for the tuples


def build_model(spec: ModelSpec) -> nn.Module:
    entry = MODELS[spec.name]
    return entry.build(
        spec.in_features, spec.num_classes, **{k: getattr(spec, k) for k in entry.settings}
    )


def predict_logits(model: nn.Module, images: Tensor) -> Tensor:
    """Logits in eval mode, in chunks of 4096 to bound memory."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(chunk) for chunk in images.split(4096)])
    model.train(was_training)
    return out
