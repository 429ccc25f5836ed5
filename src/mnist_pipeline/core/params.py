"""``params.yaml`` as frozen, validated dataclasses: one section per stage.

Every stage calls ``load_params(path)`` first. The whole file is checked before any work
starts: a missing section, an unknown key (with the closest valid key suggested, since
``dvc exp run -S train.lrr=0.1`` would otherwise silently add a new key), a wrong type or
a value out of range raises a one-line ``PipelineError`` naming the key, the bad value and
what is allowed.

Run ``python -m mnist_pipeline.core.params params.yaml`` to check a file by hand.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_pipeline.core.errors import PipelineError

DATASET_NAMES = ("mnist", "fashion-mnist", "kmnist", "idx")
SOURCES = ("auto", "mirror", "torchvision", "embedded")
MODEL_NAMES = ("linear", "mlp", "cnn")
ACTIVATIONS = ("sigmoid", "relu")
OUTPUTS = ("softmax", "sigmoid")
LOSS_NAMES = ("mse", "cross_entropy")
GRADIENTS = ("autograd", "manual")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
KERNELS = ("portable", "native")  # see core/runtime.py
# The hand-derived backward pass (backprop.py) covers these models, with every activation,
# output and loss above; anything else trains through autograd.
MANUAL_GRADIENT_MODELS = ("linear", "mlp")


def _spec(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    exclusive_min: bool = False,
) -> Any:
    """A dataclass field carrying its validation rule and a help line."""
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "exclusive_min": exclusive_min,
    }
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def manual_gradients_unsupported(model: str, activation: str, output: str, loss: str) -> str | None:
    """``None`` if the hand-derived engine handles this combination, else why not."""
    combo = f"model={model}, activation={activation}, output={output}, loss={loss}"
    for kind, value, allowed in (
        ("model", model, MANUAL_GRADIENT_MODELS),
        ("activation", activation, ACTIVATIONS),
        ("output", output, OUTPUTS),
        ("loss", loss, LOSS_NAMES),
    ):
        if value not in allowed:
            return (
                f"{kind} {value!r} is autograd only ({combo}): the manual backprop engine "
                f"supports {kind}s {', '.join(allowed)}; set train.gradients=autograd"
            )
    return None


@dataclass(frozen=True)
class DataParams:
    """``data``: which dataset, and where its four IDX files come from."""

    dataset: str = _spec("mnist", help="dataset name", choices=DATASET_NAMES)
    source: str = _spec("auto", help="where the IDX files come from", choices=SOURCES)
    mirror: str | None = _spec(None, help="directory or URL prefix holding the four IDX files")
    split_seed: int = _spec(0, help="seed of the embedded sample's stratified split", min=0)


@dataclass(frozen=True)
class TrainParams:
    """``train``: the model and the notebook's training loop."""

    model: str = _spec("linear", help="model architecture", choices=MODEL_NAMES)
    hidden: tuple[int, ...] = _spec((128,), help="hidden layer sizes (mlp, cnn head)", min=1)
    channels: tuple[int, ...] = _spec((6, 16), help="conv channels per cnn block", min=1)
    activation: str = _spec("sigmoid", help="hidden activation", choices=ACTIVATIONS)
    output: str = _spec("softmax", help="logits -> probabilities", choices=OUTPUTS)
    loss: str = _spec("mse", help="training loss", choices=LOSS_NAMES)
    gradients: str = _spec("autograd", help="backward pass", choices=GRADIENTS)
    optimizer: str = _spec("sgd", help="update rule", choices=OPTIMIZERS)
    lr: float = _spec(0.01, help="learning rate", min=0.0, exclusive_min=True)
    momentum: float = _spec(0.0, help="sgd momentum", min=0.0, max=0.999)
    weight_decay: float = _spec(0.0, help="L2 penalty added to the gradient", min=0.0)
    batch_size: int = _spec(16, help="minibatch size", min=1)
    epochs: int = _spec(10, help="passes over the training set", min=1)
    seed: int = _spec(0, help="seed for weight init and shuffling", min=0)
    val_fraction: float = _spec(
        0.0, help="held-out share of train scored per epoch", min=0, max=0.5
    )
    device: str = _spec("auto", help="where to train", choices=DEVICES)
    threads: int = _spec(1, help="torch intra-op CPU threads", min=1, max=256)
    kernels: str = _spec(
        "portable", help="CPU kernels: same bytes on any x86-64, or fastest", choices=KERNELS
    )
    processes: int = _spec(1, help="data-parallel processes (torchrun)", min=1, max=64)

    def __post_init__(self) -> None:
        if self.gradients == "manual":
            reason = manual_gradients_unsupported(
                self.model, self.activation, self.output, self.loss
            )
            if reason is not None:
                raise PipelineError(f"train.gradients: manual: {reason}")
        if self.processes > self.batch_size:
            raise PipelineError(
                f"train.processes: {self.processes} is more than train.batch_size="
                f"{self.batch_size}; every process needs a share of each minibatch"
            )
        if self.optimizer != "sgd" and self.momentum > 0:
            raise PipelineError(
                f"train.momentum: {self.momentum} applies to optimizer sgd only, not "
                f"{self.optimizer!r}; set it to 0 or use train.optimizer=sgd"
            )


@dataclass(frozen=True)
class ReportParams:
    """``report``: what the report shows."""

    n_images: int = _spec(10, help="test images in the prediction grid", min=1, max=100)


@dataclass(frozen=True)
class Params:
    data: DataParams
    train: TrainParams
    report: ReportParams


SECTIONS: dict[str, type] = {"data": DataParams, "train": TrainParams, "report": ReportParams}


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def did_you_mean(
    name: str, options: typing.Iterable[str], form: str = "; did you mean '{}'?"
) -> str:
    """A "did you mean" hint for a typo (``form`` filled with the closest option), or ""."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return form.format(match[0]) if match else ""


def _check_scalar(key: str, value: Any, kind: type, meta: dict[str, Any]) -> Any:
    """Validate one scalar against its type and metadata; return it normalised."""
    if kind is bool:
        if not isinstance(value, bool):
            raise PipelineError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PipelineError(f"{key}: expected an integer, got {_describe(value)}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PipelineError(f"{key}: expected a number, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise PipelineError(f"{key}: expected a finite number, got {value}")
    elif kind is str and not isinstance(value, str):
        raise PipelineError(f"{key}: expected a string, got {_describe(value)}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(choices)
        raise PipelineError(
            f"{key}: {_describe(value)} is not allowed (choose one of: {allowed})"
            + did_you_mean(str(value), choices)
        )
    low, high = meta.get("min"), meta.get("max")
    if low is not None:
        if meta.get("exclusive_min") and not value > low:
            raise PipelineError(f"{key}: {value} is out of range (must be > {low})")
        if value < low:
            raise PipelineError(f"{key}: {value} is out of range (must be >= {low})")
    if high is not None and value > high:
        raise PipelineError(f"{key}: {value} is out of range (must be <= {high})")
    return value


def _check_value(key: str, value: Any, annotation: Any, meta: dict[str, Any]) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(key, value, inner, meta)
    if origin is tuple:
        if not isinstance(value, list | tuple) or not value:
            raise PipelineError(f"{key}: expected a non-empty list, got {_describe(value)}")
        return tuple(_check_scalar(f"{key}[{i}]", v, args[0], meta) for i, v in enumerate(value))
    return _check_scalar(key, value, annotation, meta)


def parse_section(name: str, raw: Any, cls: type) -> Any:
    """Build the frozen dataclass ``cls`` from the mapping ``raw``, validating every key."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{name}: expected a mapping of settings, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            hint = did_you_mean(str(key), known, "; did you mean '" + name + ".{}'?")
            raise PipelineError(f"{name}.{key}: unknown key{hint} (allowed: {', '.join(known)})")
    values = {}
    for key, spec in known.items():
        if key in raw:
            values[key] = _check_value(f"{name}.{key}", raw[key], hints[key], dict(spec.metadata))
    return cls(**values)


def parse_params(raw: Any) -> Params:
    """Validate a whole params mapping (as loaded from YAML)."""
    if not isinstance(raw, dict):
        raise PipelineError("expected a mapping with sections: " + ", ".join(SECTIONS))
    for name in raw:
        if name not in SECTIONS:
            raise PipelineError(
                f"{name}: unknown section{did_you_mean(str(name), SECTIONS)} "
                f"(allowed: {', '.join(SECTIONS)})"
            )
    sections = {}
    for name, cls in SECTIONS.items():
        if name not in raw:
            raise PipelineError(f"{name}: missing section; add '{name}:' (see README)")
        sections[name] = parse_section(name, raw[name] if raw[name] is not None else {}, cls)
    return Params(**sections)


def load_params(path: Path) -> Params:
    """Read and validate ``params.yaml``; errors name the file and the key."""
    from mnist_pipeline.core.io import read_yaml

    try:
        return parse_params(read_yaml(path))
    except PipelineError as err:
        message = str(err)
        prefix = f"{path}:"
        raise PipelineError(
            message if message.startswith(prefix) else f"{prefix} {message}"
        ) from err


def main(argv: list[str] | None = None) -> int:
    """Validate a params file and print 'ok' or the problem."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "params.yaml")
    try:
        load_params(path)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
