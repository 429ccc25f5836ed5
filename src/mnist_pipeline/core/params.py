"""YAML read as DVC reads it, bounded in size and nesting; the strict field types of the
``params.yaml`` sections, and their validation as one line per problem."""

from __future__ import annotations

import contextlib
import difflib
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, Strict, ValidationError

from mnist_pipeline.core.errors import PipelineError, dotted, shown
from mnist_pipeline.core.io import read_text

MAX_YAML_DEPTH = 64  # real files nest 2 to 6 levels; libyaml's C composer crashes far deeper


def read_yaml_text(path: Path, source: object = None) -> str:
    """A YAML file's text, its nesting counted on the parser's event stream (no recursion)."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent

    text, depth = read_text(path, "YAML"), 0
    with contextlib.suppress(YAMLError):  # bad syntax: the loader names it, at its line
        for event in YAML(typ="safe").parse(text):
            if isinstance(event, CollectionStartEvent):
                depth += 1
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
            if depth > MAX_YAML_DEPTH:
                line = event.start_mark.line + 1
                raise PipelineError(
                    f"{path if source is None else source}: nested deeper than "
                    f"{MAX_YAML_DEPTH} levels at line {line}; flatten it"
                )
    return text


def read_yaml(path: Path) -> Any:
    """YAML 1.2 read as DVC reads ``params.yaml`` (ruamel's safe loader: ``1e-3`` is 0.001,
    ``yes`` a string, a key given twice refused); an empty file is ``None``."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.constructor import DuplicateKeyError

    text = read_yaml_text(path)
    try:
        return YAML(typ="safe").load(text)
    except DuplicateKeyError as err:
        key = re.search(r'duplicate key "(.*)" with value', err.problem or "", re.S)
        name = shown(key.group(1) if key else "?")
        raise PipelineError(
            f"{path}: duplicate key {name} at line {err.problem_mark.line + 1}; keep only one"
        ) from err
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PipelineError(f"{path}: not valid YAML{where}: fix the syntax") from err


Int = Annotated[int, Strict()]  # strict: a quoted '10', `true` and 2.5 are no integers
Count = Annotated[Int, Field(ge=1, le=1_000_000)]
Epochs = Annotated[Int, Field(ge=0, le=1_000_000)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # 10 is one, `true` is not
Flag = Annotated[bool, Strict()]
Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]  # torch: seed + 1 fits; sklearn: < 2**32


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
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than_equal": "<="}


def did_you_mean(name: str, options: list[str], prefix: tuple[Any, ...] = ()) -> str:
    """``; did you mean 'train.lr'?`` for the option closest to ``name`` (under ``prefix``)."""
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean '{dotted((*prefix, match[0]))}'?" if match else ""


def _describe(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"a {len(str(abs(value)))}-digit integer"
    return repr(value) if isinstance(value, str) else str(value)


def _message(error: Any, model: type[BaseModel], prefix: tuple[str, ...]) -> str:
    """One pydantic error as one line: ``train.lr: -0.1 is out of range (must be > 0.0)``."""
    loc, kind, value = (*prefix, *error["loc"]), error["type"], error["input"]
    key = dotted(loc)
    if kind == "extra_forbidden":  # an unknown section or key: its model's fields are allowed
        for part in error["loc"][:-1]:
            model = model.model_fields[part].annotation
        allowed, what = list(model.model_fields), "section" if len(loc) == 1 else "key"
        hint = did_you_mean(str(loc[-1]), allowed, loc[:-1])
        return f"{key}: unknown {what}{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"{key}: missing section; add '{key}:' (see README)"
    if kind == "literal_error":
        names = re.findall(r"'(.*?)'", error["ctx"]["expected"])
        hint = did_you_mean(str(value), names)
        return f"{key}: {_describe(value)} is not allowed (choose one of: {', '.join(names)}){hint}"
    if kind in _BOUNDS:
        bound = next(iter(error["ctx"].values()))
        value = float(value) if isinstance(bound, float) and abs(value) < 1e300 else value
        return f"{key}: {_describe(value)} is out of range (must be {_BOUNDS[kind]} {bound})"
    if not loc:
        sections = ", ".join(model.model_fields)
        return f"expected a mapping with sections: {sections}, got {_describe(value)}"
    return f"{key}: expected {_EXPECTED.get(kind, error['msg'].lower())}, got {_describe(value)}"


def problems(model: type[BaseModel], raw: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every problem of ``raw`` as ``model``, one line each, unknown keys first (a typo explains
    the missing value that follows from it)."""
    try:
        model.model_validate(raw)
    except ValidationError as err:
        found = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
        found = [e for e in found if not (e["type"] == "too_short" and e["input"])]
        return [_message(e, model, prefix) for e in found]
    except PipelineError as err:  # a combination of valid keys that cannot run
        return [str(err)]
    return []


def parse(model: type[S], raw: Any, prefix: tuple[str, ...] = (), source: object = "") -> S:
    """``raw`` validated as ``model``, or its first problem as a ``PipelineError``."""
    if found := problems(model, raw, prefix):
        raise PipelineError(f"{source}: {found[0]}" if source else found[0])
    return model.model_validate(raw)


def load_section(path: Path, name: str, model: type[S]) -> S:
    """Section ``name`` of the params file at ``path``, validated; any unknown section stops."""
    raw = read_yaml(path)  # its errors name the file already
    if not isinstance(raw, dict) or name not in raw:
        raise PipelineError(f"{path}: {name}: missing section; add '{name}:' (see README)")
    for key in raw:
        if key not in SECTIONS:
            hint = f"{did_you_mean(str(key), SECTIONS)} (allowed: {', '.join(SECTIONS)})"
            raise PipelineError(f"{path}: {key}: unknown section{hint}")
    return parse(model, raw[name] or {}, (name,), path)
