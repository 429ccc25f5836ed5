"""The machinery behind every ``params.yaml`` section: strict field types, and validation whose
every problem is one line naming the key, the bad value and what is allowed.

Each section's model lives with the folder that uses it (``data.params``, ``learning.params``,
``reporting.params``); a stage loads only its own sections, so its code depends on nothing else.
``tools.params`` assembles the whole file for ``validate``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

from pydantic import BaseModel, Field, Strict, ValidationError

from mnist_pipeline.core.errors import PipelineError, dotted
from mnist_pipeline.core.io import read_yaml

# Strict: a quoted '10' is no integer, `true` no number, 2.5 no integer (10 is a float).
Int = Annotated[int, Strict()]
Count = Annotated[Int, Field(ge=1, le=1_000_000)]
Epochs = Annotated[Int, Field(ge=0, le=1_000_000)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Flag = Annotated[bool, Strict()]
# Seeds go to torch (seed + 1 must fit) and sklearn (random_state < 2**32).
Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]


# params.yaml's sections, one per folder that declares one (tools.params assembles them).
SECTIONS = ("data", "train", "report")


class Section(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


S = TypeVar("S", bound=BaseModel)

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


def did_you_mean(name: str, options: Iterable[str], form: str = "; did you mean '{}'?") -> str:
    """A "did you mean" hint for a typo (``form`` filled with the closest option), or ""."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return form.format(match[0]) if match else ""


def _describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"a {len(str(abs(value)))}-digit integer"
    return repr(value) if isinstance(value, str) else str(value)


def _field_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that holds the last key of ``loc`` (a section, or ``model`` itself)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        inner = field.annotation if field else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


def _message(error: Any, model: type[BaseModel], prefix: tuple[str, ...]) -> str:
    """One pydantic error as one line: ``train.lr: -0.1 is out of range (must be > 0.0)``."""
    loc, kind, value = (*prefix, *error["loc"]), error["type"], error["input"]
    key, owner = dotted(loc), _field_model(model, error["loc"])
    if kind == "extra_forbidden" and owner is not None:  # an unknown section or key
        allowed, what = owner.model_fields, "section" if len(loc) == 1 else "key"
        hint = did_you_mean(str(loc[-1]), allowed, f"; did you mean '{dotted((*loc[:-1], '{}'))}'?")
        return f"{key}: unknown {what}{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"{key}: missing section; add '{key}:' (see README)"
    if kind == "literal_error" and owner is not None:
        choices = [str(c) for c in get_args(owner.model_fields[str(loc[-1])].annotation)]
        return (
            f"{key}: {_describe(value)} is not allowed (choose one of: {', '.join(choices)})"
            + did_you_mean(str(value), choices)
        )
    if kind in _BOUNDS:
        bound = next(iter(error["ctx"].values()))
        value = float(value) if isinstance(bound, float) and abs(value) < 1e300 else value
        return f"{key}: {_describe(value)} is out of range (must be {_BOUNDS[kind]} {bound})"
    if not loc:
        sections = ", ".join(model.model_fields)
        return f"expected a mapping with sections: {sections}, got {_describe(value)}"
    return f"{key}: expected {_EXPECTED.get(kind, error['msg'].lower())}, got {_describe(value)}"


def problems(model: type[BaseModel], raw: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every problem of ``raw`` as ``model`` (keys named under ``prefix``), one line each."""
    try:
        model.model_validate(raw)
    except ValidationError as err:
        # Unknown keys first: a typo explains the missing value that follows from it.
        found = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        # pydantic also calls a list with a bad item "too short": the item says it all.
        return [
            _message(e, model, prefix)
            for e in found
            if not (e["type"] == "too_short" and e["input"])
        ]
    except PipelineError as err:  # a combination of valid keys that cannot run
        return [str(err)]
    return []


def parse(model: type[S], raw: Any, prefix: tuple[str, ...] = ()) -> S:
    """``raw`` validated as ``model``, or the first problem as a ``PipelineError``."""
    if found := problems(model, raw, prefix):
        raise PipelineError(found[0])
    return model.model_validate(raw)


def load_section(path: Path, name: str, model: type[S]) -> S:
    """Section ``name`` of the params file at ``path``, validated; errors name file and key.
    An empty section (``train:``) is all defaults; an unknown section stops every stage."""
    raw = read_yaml(path)  # its errors name the file already
    try:
        if not isinstance(raw, dict) or name not in raw:
            raise PipelineError(f"{name}: missing section; add '{name}:' (see README)")
        for key in raw:
            if key not in SECTIONS:
                hint = did_you_mean(str(key), SECTIONS)
                allowed = ", ".join(SECTIONS)
                raise PipelineError(f"{key}: unknown section{hint} (allowed: {allowed})")
        return parse(model, raw[name] or {}, (name,))
    except PipelineError as err:
        raise PipelineError(f"{path}: {err}") from err
