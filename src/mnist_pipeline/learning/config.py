"""``params.yaml`` as frozen pydantic models, one section per stage, each default written once
and each list of choices taken from the registry that implements it.

``load_params`` checks the whole file before a stage works: every problem (an unknown key, with
the closest valid one suggested, a wrong type, a value out of range, a combination that cannot
run) is one ``PipelineError`` line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args, get_origin

from pydantic import BaseModel, Field, Strict, ValidationError, field_validator, model_validator

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError, dotted, shown
from mnist_pipeline.core.io import read_yaml
from mnist_pipeline.core.runtime import DEVICES, KERNELS
from mnist_pipeline.data.sources import DATASETS, SOURCES
from mnist_pipeline.data.splits import IMAGE_SIDE
from mnist_pipeline.learning.losses import LOSSES
from mnist_pipeline.learning.models import ACTIVATIONS, MODELS
from mnist_pipeline.learning.optim import OPTIMIZERS

# Strict: a quoted '10' is no integer, `true` no number, 2.5 no integer (10 is a float).
Int = Annotated[int, Strict()]
Count = Annotated[Int, Field(ge=1, le=1_000_000)]
Epochs = Annotated[Int, Field(ge=0, le=1_000_000)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
# Seeds go to torch (seed + 1 must fit) and sklearn (random_state < 2**32).
Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]
# lr and weight decay scale float32 gradients: a larger factor overflows float32 (3.4e38).
Factor = Annotated[Number, Field(le=1e38)]
Sizes = Annotated[tuple[Count, ...], Field(min_length=1)]

# Each list of choices is a registry's keys: the params accept exactly what is registered.
Dataset = Literal[tuple(DATASETS)]
Source = Literal[("auto", *SOURCES)]  # auto: the first of them that works (data.sources)
ModelName = Literal[tuple(MODELS)]
Loss = Literal[tuple(dict.fromkeys(loss for losses in LOSSES.values() for loss in losses))]
MAX_WEIGHTS = 25_000_000  # ~100 MB of float32; training holds ~4 copies (grads, Adam)
# Settings that only bound or check the run: no stage tracks them in dvc.yaml and the report
# leaves them out, so changing one reruns nothing and changes no output.
UNTRACKED = ("data.download_timeout",)


class Section(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class DataParams(Section):
    """``data``: which dataset, and where its four IDX files come from."""

    dataset: Dataset = "mnist"
    source: Source = "auto"
    mirror: Annotated[str, Strict()] | None = None  # directory or URL prefix of the IDX files
    split_seed: Seed = 0  # the embedded sample's stratified split
    verify: Annotated[bool, Strict()] = True  # false: accept known files matching no checksum
    # seconds, the whole download: at most a day (the alarm that enforces it takes an int)
    download_timeout: Annotated[Number, Field(gt=0.0, le=86_400.0)] = 600.0

    @field_validator("mirror")
    @classmethod
    def _printable(cls, mirror: str | None) -> str | None:
        """One printable line: a control character would end up in commands, URLs and errors."""
        if mirror is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in mirror):
            raise PipelineError(
                f"data.mirror: {shown(mirror)} holds a control character (newline, NUL, "
                "escape); give a plain directory path or URL prefix"
            )
        return mirror


class TrainParams(Section):
    """``train``: the model and the notebook's training loop."""

    model: ModelName = "linear"
    hidden: Sizes = (128,)  # mlp layers, and the cnn's head
    channels: Sizes = (6, 16)  # one conv + 2×2 max-pool block per entry (cnn, cnn_bn)
    activation: Literal[tuple(ACTIVATIONS)] = "sigmoid"
    output: Literal[tuple(LOSSES)] = "softmax"
    loss: Loss = "mse"
    gradients: Literal["manual", "autograd"] = "manual"  # manual: backprop.ManualBackprop
    optimizer: Literal[tuple(OPTIMIZERS)] = "sgd"
    lr: Annotated[Factor, Field(gt=0.0)] = 0.01
    momentum: Annotated[Number, Field(ge=0.0, le=0.999)] = 0.0
    weight_decay: Annotated[Factor, Field(ge=0.0)] = 0.0
    batch_size: Count = 16
    epochs: Count = 10
    seed: Seed = 0
    val_fraction: Annotated[Number, Field(ge=0.0, le=0.5)] = 0.0
    keep: Literal["last", "best"] = "last"  # which epoch's weights ship
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"  # what best and patience follow
    patience: Epochs = 0  # 0: never stop early
    schedule: Literal["constant", "step", "cosine"] = "constant"  # learning rate per epoch
    step_size: Count = 10  # step: epochs per decay
    gamma: Annotated[Number, Field(gt=0.0, le=1.0)] = 0.1  # step: lr factor per decay
    warmup: Epochs = 0  # epochs of linear warm-up
    device: Literal[tuple(DEVICES)] = "auto"
    threads: Annotated[Int, Field(ge=1, le=256)] = 1
    kernels: Literal[tuple(KERNELS)] = "portable"  # see core/runtime.py
    processes: Annotated[Int, Field(ge=1, le=64)] = 1
    rank_timeout: Annotated[Number, Field(ge=5, le=86_400)] = 120  # s without a reply: stalled

    @model_validator(mode="after")
    def _runnable(self) -> TrainParams:
        """Refuse combinations of valid keys that cannot run, before any stage starts."""
        entry = MODELS[self.model]
        if self.gradients == "manual" and not entry.manual:
            manual = ", ".join(name for name, model in MODELS.items() if model.manual)
            raise PipelineError(
                f"train.gradients: manual: model {self.model!r} is autograd only: the manual "
                f"backprop engine trains models {manual}; set train.gradients=autograd"
            )
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
        chooser = "train.keep: best" if self.keep == "best" else f"train.patience: {self.patience}"
        if self.val_fraction == 0 and (self.keep == "best" or self.patience > 0):
            raise PipelineError(
                f"{chooser} needs a validation slice to choose by (the test set never chooses); "
                "set train.val_fraction > 0, e.g. 0.1"
            )
        if self.warmup >= self.epochs:
            raise PipelineError(
                f"train.warmup: {self.warmup} epochs leaves none of train.epochs="
                f"{self.epochs} after the warm-up; use fewer warm-up epochs"
            )
        settings = {key: getattr(self, key) for key in entry.settings}
        try:
            weights = entry.weights(IMAGE_SIDE, settings)
        except ValueError as err:  # the settings cannot be built
            raise PipelineError(f"train.{err}") from err
        if weights > MAX_WEIGHTS:
            sized = [f"{k} {list(v)}" for k, v in settings.items() if isinstance(v, tuple)]
            raise PipelineError(
                f"train.{' with '.join(sized).replace(' ', ': ', 1)} makes a {self.model} of "
                f"{weights:,} weights, over the {MAX_WEIGHTS:,} that train in the 1.5 GB "
                "memory budget; use smaller layers"
            )
        return self


class ReportParams(Section):
    """``report``: what the report shows."""

    n_images: Annotated[Int, Field(ge=1, le=100)] = 10  # test images in the prediction grid


class Params(Section):
    data: DataParams
    train: TrainParams
    report: ReportParams

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, raw: Any) -> Any:
        """``train:`` with nothing under it is a section of defaults."""
        return {k: {} if v is None else v for k, v in raw.items()} if isinstance(raw, dict) else raw


SECTIONS = {name: cast(type[Section], f.annotation) for name, f in Params.model_fields.items()}


def did_you_mean(name: str, options: Iterable[str], form: str = "; did you mean '{}'?") -> str:
    """A "did you mean" hint for a typo (``form`` filled with the closest option), or ""."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return form.format(match[0]) if match else ""


def _describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"a {len(str(abs(value)))}-digit integer"
    return repr(value) if isinstance(value, str) else str(value)


_EXPECTED = {
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "tuple_type": "a non-empty list",
    "too_short": "a non-empty list",
    "model_type": "a mapping of settings",
    "dict_type": "a mapping of settings",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than_equal": "<="}


def _message(error: Any) -> str:
    """One pydantic error as one line: ``train.lr: -0.1 is out of range (must be > 0.0)``."""
    loc, kind, value = error["loc"], error["type"], error["input"]
    key = dotted(loc)
    section = SECTIONS.get(str(loc[0])) if loc else None
    if kind == "extra_forbidden":  # an unknown section, or an unknown key of a section
        allowed, what = (SECTIONS, "section") if section is None else (section.model_fields, "key")
        hint = did_you_mean(str(loc[-1]), allowed, f"; did you mean '{dotted((*loc[:-1], '{}'))}'?")
        return f"{key}: unknown {what}{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"{key}: missing section; add '{key}:' (see README)"
    if kind == "literal_error":
        choices = [str(c) for c in get_args(section.model_fields[str(loc[1])].annotation)]
        return (
            f"{key}: {_describe(value)} is not allowed (choose one of: {', '.join(choices)})"
            + did_you_mean(str(value), choices)
        )
    if kind in _BOUNDS:
        bound = next(iter(error["ctx"].values()))
        value = float(value) if isinstance(bound, float) and abs(value) < 1e300 else value
        return f"{key}: {_describe(value)} is out of range (must be {_BOUNDS[kind]} {bound})"
    if not loc:
        return f"expected a mapping with sections: {', '.join(SECTIONS)}, got {_describe(value)}"
    return f"{key}: expected {_EXPECTED.get(kind, error['msg'].lower())}, got {_describe(value)}"


def problems(raw: Any) -> list[str]:
    """Every problem of a params mapping (as loaded from YAML), one line each; [] if valid."""
    try:
        Params.model_validate(raw)
    except ValidationError as err:
        # Unknown keys first: a typo explains the missing value that follows from it.
        found = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        # pydantic also calls a list with a bad item "too short": the item says it all.
        return [_message(e) for e in found if not (e["type"] == "too_short" and e["input"])]
    except PipelineError as err:  # a combination of valid keys that cannot run
        return [str(err)]
    return []


def parse_params(raw: Any) -> Params:
    """Validate a whole params mapping (as loaded from YAML)."""
    if found := problems(raw):
        raise PipelineError(found[0])
    return Params.model_validate(raw)


def load_params(path: Path) -> Params:
    """Read and validate ``params.yaml``; errors name the file and the key."""
    raw = read_yaml(path)  # its errors name the file already
    try:
        return parse_params(raw)
    except PipelineError as err:
        raise PipelineError(f"{path}: {err}") from err


def keys() -> list[str]:
    """``train.model: linear (one of: linear, mlp, ...)``: every key, default and choices."""
    lines = []
    for name, section in SECTIONS.items():
        for key, field in section.model_fields.items():
            literal = get_origin(field.annotation) is Literal
            allowed = f" (one of: {', '.join(get_args(field.annotation))})" if literal else ""
            lines.append(f"{name}.{key}: {field.default}{allowed}")
    return lines


@entry_point
def main(argv: list[str] | None = None) -> None:
    """Validate a params file and print 'ok' or the problem."""
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline params", description="Check a params file."
    )
    parser.add_argument("path", nargs="?", type=Path, default=Path("params.yaml"))
    parser.add_argument("--keys", action="store_true", help="list keys, defaults, choices")
    args = parser.parse_args(argv)
    if args.keys:
        print("\n".join(keys()))
        return
    load_params(args.path)
    print(f"{args.path}: ok")


if __name__ == "__main__":
    raise SystemExit(main())
