"""Is the pipeline definition sound? ``make validate``, and the first step of CI.

    PYTHONPATH=src python -m mnist_pipeline.tools.validate [--root DIR] [--up-to-date]
        [--thresholds .ci/thresholds.yaml] [--schema FILE]

Prints one ``error: ...`` line per problem (what, where, how to fix) on stderr and exits 2,
or prints one ``validate: ...`` summary line and exits 0. The checks:

- ``dvc.yaml`` is YAML, follows the dvc.yaml JSON schema (``schemas/dvc_yaml.schema.json``,
  or ``--schema FILE``, e.g. iterative/dvcyaml-schema's ``schema.json``), and DVC itself
  loads it and builds the DAG (``dvc dag``);
- every section of ``params.yaml`` validates (``mnist_pipeline.core.params``);
- deps are complete: a stage lists the script its ``cmd`` runs and every project module
  that script imports, transitively (read from the code with ``ast``, never run), and no
  project module the script never imports; every ``params:`` entry exists in its file;
- ``--up-to-date``: ``dvc status`` is clean, i.e. ``dvc.lock`` matches the workspace;
- ``--thresholds FILE``: metrics meet their bounds. ``FILE`` maps a metrics file to
  ``{metric: floor}`` or ``{metric: {min: x, max: y}}``; dotted metric names reach into
  nested JSON (``per_class.5.recall``).

The schema validator implements the JSON Schema keywords such schemas use (``type``,
``properties``, ``additionalProperties``, ``required``, ``items``, ``anyOf``/``oneOf``/
``allOf``, ``$ref`` to local definitions, ``enum``, ``pattern``, size limits) and refuses
a schema with any other keyword rather than ignore it; ``jsonschema`` is not a dependency.

No stage imports this module (it shells out to ``dvc`` and reads the whole project), so
editing it reruns nothing.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.params import SECTIONS, did_you_mean, parse_section

EXIT_PROBLEMS = 2
DVC_YAML = "dvc.yaml"
PARAMS_YAML = "params.yaml"
SCHEMA_RESOURCE = ("schemas", "dvc_yaml.schema.json")
DVC_TIMEOUT_S = 300.0
MAX_LISTED = 4  # changed files named per `dvc status` line before "and N more"

JsonPath = tuple[str | int, ...]


# ------------------------------------------------------------------------ YAML, lines


def _kind(value: Any) -> str:
    """How a YAML value reads in a message: 'a list', "the string 'x'", ..."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def dotted(path: JsonPath) -> str:
    """A key path as text: ``stages.evaluate.metrics[0]['metrics/eval.json'].cache``.

    Keys that are not plain words (paths, dotted names) are quoted, so dots stay unambiguous.
    """
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[\w-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(top level)"


def _index_lines(node: yaml.Node, path: JsonPath, lines: dict[JsonPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            lines[child] = key.start_mark.line + 1  # a key's problems point at the key
            _index_lines(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines)


@dataclass(frozen=True)
class YamlDoc:
    """A YAML file's data and the line where each key or list item starts."""

    label: str  # how messages name the file, e.g. "dvc.yaml"
    data: Any
    lines: dict[JsonPath, int] = field(default_factory=dict)

    def where(self, path: JsonPath) -> str:
        """``dvc.yaml:57: stages.train.outz``: the nearest line known for ``path``."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return f"{self.label}:{line}: {dotted(path)}"
        return f"{self.label}: {dotted(path)}"


def load_yaml(path: Path, label: str) -> YamlDoc:
    """Parse a YAML file, remembering lines; a missing or broken file is one error line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise PipelineError(f"{label}: file not found in {path.parent}; pass --root DIR") from err
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise PipelineError(f"{label}{where}: not valid YAML ({problem}); fix the syntax") from err
    lines: dict[JsonPath, int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return YamlDoc(label, data, lines)


# ------------------------------------------------------------------------- JSON schema

_TYPES: dict[str, tuple[str, Any]] = {
    "object": ("a mapping", lambda v: isinstance(v, dict)),
    "array": ("a list", lambda v: isinstance(v, list)),
    "string": ("a string", lambda v: isinstance(v, str)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "null": ("nothing (null)", lambda v: v is None),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
}
_ANNOTATIONS = frozenset(
    {"$comment", "$id", "$schema", "title", "description", "desc", "default", "examples"}
)
_CONTAINERS = frozenset({"definitions", "$defs"})
_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "uniqueItems",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "enum",
        "const",
        "pattern",
        "minProperties",
        "maxProperties",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
    }
)


@dataclass(frozen=True)
class SchemaIssue:
    path: JsonPath
    message: str
    type_mismatch: bool = False  # the value at ``path`` itself has the wrong type


def _expected(names: Sequence[str]) -> str:
    words = [_TYPES[name][0] for name in dict.fromkeys(names)]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class JsonSchema:
    """Validates data against a JSON Schema that uses only ``_KEYWORDS`` (checked up front)."""

    def __init__(self, schema: Mapping[str, Any], label: str) -> None:
        self.root = schema
        self.label = label
        self._check(schema, "#")

    def _check(self, node: Any, where: str) -> None:
        if isinstance(node, bool):
            return
        if not isinstance(node, Mapping):
            raise PipelineError(f"{self.label}: {where}: a schema must be an object or boolean")
        unknown = sorted(set(node) - _KEYWORDS - _ANNOTATIONS - _CONTAINERS)
        if unknown:
            raise PipelineError(
                f"{self.label}: {where}: unsupported JSON Schema keyword(s) "
                f"{', '.join(unknown)}; mnist_pipeline.tools.validate implements "
                f"{', '.join(sorted(_KEYWORDS))}"
            )
        kind = node.get("type")
        for name in kind if isinstance(kind, list) else [kind]:
            if name is not None and name not in _TYPES:
                raise PipelineError(f"{self.label}: {where}: unknown type {name!r}")
        for key in ("properties", *_CONTAINERS):
            for name, sub in node.get(key, {}).items():
                self._check(sub, f"{where}/{key}/{name}")
        for key in ("additionalProperties", "items"):
            if key in node:
                self._check(node[key], f"{where}/{key}")
        for key in ("anyOf", "oneOf", "allOf"):
            for index, sub in enumerate(node.get(key, [])):
                self._check(sub, f"{where}/{key}/{index}")
        if "$ref" in node:
            self._resolve(node["$ref"])

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise PipelineError(
                f"{self.label}: $ref {ref!r}: only local '#/...' refs are supported"
            )
        node: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise PipelineError(f"{self.label}: $ref {ref!r} points nowhere")
            node = node[part]
        return node

    def issues(self, value: Any, schema: Any = None, path: JsonPath = ()) -> list[SchemaIssue]:
        """Every way ``value`` breaks ``schema`` (the root schema by default)."""
        schema = self.root if schema is None else schema
        if schema is True:
            return []
        if schema is False:
            return [SchemaIssue(path, "not allowed here")]
        found: list[SchemaIssue] = []
        if "$ref" in schema:
            found += self.issues(value, self._resolve(schema["$ref"]), path)
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            if not any(_TYPES[name][1](value) for name in names):
                message = f"expected {_expected(names)}, got {_kind(value)}"
                return [*found, SchemaIssue(path, message, type_mismatch=True)]
        if "enum" in schema and value not in schema["enum"]:
            allowed = ", ".join(map(str, schema["enum"]))
            found.append(SchemaIssue(path, f"{_kind(value)} is not one of: {allowed}"))
        if "const" in schema and value != schema["const"]:
            found.append(SchemaIssue(path, f"must be {schema['const']!r}, got {_kind(value)}"))
        if isinstance(value, str):
            found += self._string(value, schema, path)
        elif isinstance(value, dict):
            found += self._mapping(value, schema, path)
        elif isinstance(value, list):
            found += self._list(value, schema, path)
        for sub in schema.get("allOf", []):
            found += self.issues(value, sub, path)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                found += self._alternatives(value, schema[key], path, exactly_one=key == "oneOf")
        return found

    def _string(self, value: str, schema: Mapping[str, Any], path: JsonPath) -> list[SchemaIssue]:
        found = []
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(SchemaIssue(path, f"{value!r} does not match {schema['pattern']!r}"))
        if len(value) < schema.get("minLength", 0):
            found.append(SchemaIssue(path, f"must not be shorter than {schema['minLength']}"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(SchemaIssue(path, f"must not be longer than {schema['maxLength']}"))
        return found

    def _mapping(
        self, value: dict[Any, Any], schema: Mapping[str, Any], path: JsonPath
    ) -> list[SchemaIssue]:
        found: list[SchemaIssue] = []
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            name = str(key)
            if name in properties:
                found += self.issues(item, properties[name], (*path, name))
            elif extra is False:
                allowed = list(properties)
                found.append(
                    SchemaIssue(
                        (*path, name),
                        f"unknown key {name!r}{did_you_mean(name, allowed)} "
                        f"(allowed: {', '.join(allowed)})",
                    )
                )
            elif extra is not True:
                found += self.issues(item, extra, (*path, name))
        for name in schema.get("required", []):
            if name not in value:
                found.append(SchemaIssue(path, f"missing required key {name!r}; add it"))
        if len(value) < schema.get("minProperties", 0):
            found.append(SchemaIssue(path, f"needs at least {schema['minProperties']} key(s)"))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            found.append(SchemaIssue(path, f"allows at most {schema['maxProperties']} key(s)"))
        return found

    def _list(
        self, value: list[Any], schema: Mapping[str, Any], path: JsonPath
    ) -> list[SchemaIssue]:
        found: list[SchemaIssue] = []
        if "items" in schema:
            for index, item in enumerate(value):
                found += self.issues(item, schema["items"], (*path, index))
        if schema.get("uniqueItems"):
            seen: set[str] = set()
            for index, item in enumerate(value):
                canonical = json.dumps(item, sort_keys=True, default=str)
                if canonical in seen:
                    found.append(SchemaIssue((*path, index), "duplicate entry; remove it"))
                seen.add(canonical)
        if len(value) < schema.get("minItems", 0):
            found.append(SchemaIssue(path, f"needs at least {schema['minItems']} item(s)"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(SchemaIssue(path, f"allows at most {schema['maxItems']} item(s)"))
        return found

    def _types_of(self, schema: Any) -> list[str]:
        if not isinstance(schema, Mapping):
            return []
        if "$ref" in schema:
            return self._types_of(self._resolve(schema["$ref"]))
        kind = schema.get("type", [])
        names = [kind] if isinstance(kind, str) else list(kind)
        for key in ("anyOf", "oneOf"):
            for sub in schema.get(key, []):
                names += self._types_of(sub)
        return names

    def _alternatives(
        self, value: Any, branches: Sequence[Any], path: JsonPath, exactly_one: bool
    ) -> list[SchemaIssue]:
        results = [self.issues(value, branch, path) for branch in branches]
        passing = sum(1 for found in results if not found)
        if exactly_one and passing > 1:
            return [SchemaIssue(path, f"matches {passing} alternatives; exactly one is allowed")]
        if passing:
            return []
        # Report the alternative the value was evidently meant as: one whose type fits,
        # with the fewest issues (a stage with one bad key is a Stage, not a foreach).
        fitting = [
            found
            for found in results
            if not any(issue.type_mismatch and issue.path == path for issue in found)
        ]
        if fitting:
            return min(fitting, key=len)
        names = [name for branch in branches for name in self._types_of(branch)]
        if not names:
            return [SchemaIssue(path, f"{_kind(value)} matches none of the allowed forms")]
        return [SchemaIssue(path, f"expected {_expected(names)}, got {_kind(value)}", True)]


def load_schema(path: Path | None = None) -> JsonSchema:
    """The bundled dvc.yaml schema, or the JSON schema file at ``path``."""
    if path is None:
        resource = resources.files("mnist_pipeline.tools").joinpath(*SCHEMA_RESOURCE)
        label, text = (
            f"mnist_pipeline/tools/{'/'.join(SCHEMA_RESOURCE)}",
            resource.read_text("utf-8"),
        )
    else:
        label = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise PipelineError(f"{label}: cannot read the schema ({err.strerror})") from err
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as err:
        raise PipelineError(f"{label}: not valid JSON ({err.msg} at line {err.lineno})") from err
    return JsonSchema(schema, label)


def schema_problems(doc: YamlDoc, schema: JsonSchema) -> list[str]:
    """One line per schema violation: ``dvc.yaml:LINE: key.path: what; fix``."""
    return [f"{doc.where(i.path)}: {i.message}" for i in schema.issues(doc.data)]


# --------------------------------------------------------------------------------- DVC


def run_dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dvc ARGS`` in ``root`` with this interpreter's dvc (its bin dir first on PATH)."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        return subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=DVC_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        raise PipelineError(
            f"`dvc {' '.join(args)}` did not finish in {DVC_TIMEOUT_S:.0f} s in {root}; "
            "is another dvc process holding the repository lock?"
        ) from err


def dvc_messages(result: subprocess.CompletedProcess[str]) -> list[str]:
    """DVC's error output as one line per ``ERROR:`` block (all of it if none)."""
    blocks: list[list[str]] = []
    for raw in (result.stderr or result.stdout or "").splitlines():
        line = " ".join(raw.replace("│", " ").split())
        if not line:
            continue
        if line.startswith("ERROR:") or not blocks:
            blocks.append([line.removeprefix("ERROR:").strip()])
        else:
            blocks[-1].append(line)
    messages = [" ".join(block) for block in blocks] or [f"exit status {result.returncode}"]
    return [m if len(m) <= 300 else m[:297] + "..." for m in messages]


def dag_problems(root: Path) -> list[str]:
    """DVC loads every stage and builds the graph (cycles, overlapping outputs, ...)."""
    result = run_dvc(root, "dag", "--dot")
    if result.returncode == 0:
        return []
    return [
        f"{DVC_YAML}: DVC cannot build the pipeline: {message}; fix {DVC_YAML} "
        "(check with `dvc dag`)"
        for message in dvc_messages(result)
    ]


def status_problems(root: Path) -> list[str]:
    """One line per stage that ``dvc status`` does not consider up to date."""
    result = run_dvc(root, "status", "--json")
    if result.returncode != 0:
        return [f"dvc status failed: {m}; fix that first" for m in dvc_messages(result)]
    try:
        status = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        return [f"dvc status --json printed no JSON: {result.stdout.strip()[:200]!r}"]
    problems = []
    for stage, changes in status.items():
        parts = []
        for change in changes if isinstance(changes, list) else [changes]:
            if not isinstance(change, dict):
                parts.append(str(change))
                continue
            for kind, files in change.items():
                if isinstance(files, dict):
                    named = [f"{path} {state}" for path, state in files.items()]
                    more = len(named) - MAX_LISTED
                    shown = ", ".join(named[:MAX_LISTED]) + (
                        f" and {more} more" if more > 0 else ""
                    )
                    parts.append(f"{kind}: {shown}")
                else:
                    parts.append(f"{kind}: {files}")
        problems.append(
            f"dvc status: stage '{stage}' is not up to date ({'; '.join(parts)}); "
            "run `dvc repro` and commit dvc.lock"
        )
    return problems


# ------------------------------------------------------------------------------ params


def params_problems(root: Path) -> list[str]:
    """One line per bad section of params.yaml (see ``mnist_pipeline.core.params``)."""
    try:
        doc = load_yaml(root / PARAMS_YAML, PARAMS_YAML)
    except PipelineError as err:
        return [str(err)]
    raw = doc.data
    if not isinstance(raw, dict):
        return [f"{PARAMS_YAML}: expected sections {', '.join(SECTIONS)}, got {_kind(raw)}"]
    problems = [
        f"{doc.where((str(name),))}: unknown section{did_you_mean(str(name), SECTIONS)} "
        f"(allowed: {', '.join(SECTIONS)})"
        for name in raw
        if name not in SECTIONS
    ]
    for name, cls in SECTIONS.items():
        if name not in raw:
            problems.append(f"{PARAMS_YAML}: {name}: missing section; add '{name}:' (see README)")
            continue
        section = raw[name] if raw[name] is not None else {}
        errors: list[str] = []
        if isinstance(section, dict):  # each key on its own first: one line per bad key
            for key, value in section.items():
                try:
                    parse_section(name, {key: value}, cls)
                except PipelineError as err:
                    if str(err).startswith(f"{name}.{key}"):
                        errors.append(str(err))
        if not errors:  # then the section as a whole: types of mappings, cross-key rules
            try:
                parse_section(name, section, cls)
            except PipelineError as err:
                errors.append(str(err))
        for error in errors:
            # "train.lrr: unknown key..." -> the line of train.lrr (or of train)
            key = re.match(r"([\w.-]+?)(\[\d+\])?: ", error)
            path = tuple(key.group(1).split(".")) if key else (name,)
            line = doc.lines.get(path, doc.lines.get((name,)))
            problems.append(f"{PARAMS_YAML}{'' if line is None else f':{line}'}: {error}")
    return problems


def _lookup(data: Any, key: str) -> tuple[bool, Any]:
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _dotted_keys(data: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}{key}"
            keys += [name, *_dotted_keys(value, f"{name}.")]
    return keys


# -------------------------------------------------------------------------------- deps


def module_file(name: str, search: Sequence[Path]) -> Path | None:
    """The file that ``import name`` loads from one of ``search``, if it is ours."""
    for base in search:
        target = base.joinpath(*name.split("."))
        if (target / "__init__.py").is_file():
            return target / "__init__.py"
        if target.with_suffix(".py").is_file():
            return target.with_suffix(".py")
    return None


def _package_of(path: Path, search: Sequence[Path]) -> list[str]:
    for base in search:
        if path.is_relative_to(base):
            parts = list(path.relative_to(base).with_suffix("").parts)
            return parts[:-1]  # a module's package; for __init__ the package itself
    return []


def imported_modules(path: Path, search: Sequence[Path]) -> set[Path]:
    """Files of the project modules ``path`` imports, in any scope, packages included."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as err:
        raise PipelineError(f"{path}:{err.lineno}: cannot parse it ({err.msg}); fix it") from err
    found: set[Path] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path, search)
                keep = len(package) - (node.level - 1)
                base = ".".join([*package[: max(keep, 0)], *filter(None, [node.module])])
            if base:
                names.append(base)
            names += [f"{base}.{a.name}" if base else a.name for a in node.names if a.name != "*"]
        for name in names:
            parts = name.split(".")
            for end in range(1, len(parts) + 1):  # `import a.b.c` runs a, a.b and a.b.c
                target = module_file(".".join(parts[:end]), search)
                if target is not None:
                    found.add(target)
    return found


def import_closure(script: Path, search: Sequence[Path]) -> dict[Path, Path]:
    """Every project module ``script`` imports, transitively: module -> who imports it."""
    importer: dict[Path, Path] = {}
    todo = [script]
    while todo:
        current = todo.pop()
        for target in sorted(imported_modules(current, search)):
            if target != script and target not in importer:
                importer[target] = current
                todo.append(target)
    return importer


@dataclass(frozen=True)
class StageCode:
    """What a stage's ``cmd`` runs: its Python scripts and the import search path."""

    scripts: list[Path]
    search: list[Path]


def stage_code(root: Path, spec: Mapping[str, Any]) -> StageCode:
    """Scripts run by ``cmd`` (``x.py`` or ``-m module``) and the dirs they import from.

    The search path is ``PYTHONPATH=`` from the command, else ``src/``; a script's own
    directory comes first, as Python puts it first on ``sys.path``.
    """
    base = root / str(spec.get("wdir", "."))
    cmd = spec.get("cmd", [])
    commands = [cmd] if isinstance(cmd, str) else cmd if isinstance(cmd, list) else []
    commands = [c for c in commands if isinstance(c, str)]
    tokens: list[str] = []
    for command in commands:
        try:
            tokens += shlex.split(command)
        except ValueError:
            tokens += command.split()
    pythonpath = [t.split("=", 1)[1] for t in tokens if t.startswith("PYTHONPATH=")]
    roots = [base / p for entry in pythonpath for p in entry.split(os.pathsep) if p]
    search = [p.resolve() for p in roots or [base / "src"]]
    scripts: list[Path] = []
    for index, token in enumerate(tokens):
        candidate: Path | None = None
        if token.endswith(".py") and (base / token).is_file():
            candidate = base / token
        elif token == "-m" and index + 1 < len(tokens):
            candidate = module_file(tokens[index + 1], search)
        if candidate is not None and candidate.resolve() not in scripts:
            scripts.append(candidate.resolve())
    dirs = list(dict.fromkeys(s.parent for s in scripts))
    return StageCode(scripts, [*dirs, *[s for s in search if s not in dirs]])


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root.resolve())).as_posix()


def _norm(path: str) -> str:
    return Path(os.path.normpath(path)).as_posix()


def stage_deps_problems(doc: YamlDoc, root: Path, name: str) -> list[str]:
    """The stage's script and every module it imports are deps, and nothing it does not import.

    ``doc`` is the parsed dvc.yaml; ``name`` a stage in it. Paths in messages are relative
    to ``root``.
    """
    spec = doc.data["stages"][name]
    if not isinstance(spec, dict) or "foreach" in spec:
        return []  # foreach/matrix stages are generated; DVC checks their expansion
    root = root.resolve()
    code = stage_code(root, spec)
    base = root / str(spec.get("wdir", "."))
    raw_deps = spec.get("deps") or []
    deps = {_norm(_rel(base / d, root)): i for i, d in enumerate(raw_deps) if isinstance(d, str)}
    where = doc.where(("stages", name, "deps") if "deps" in spec else ("stages", name))

    def covered(path: Path) -> bool:
        rel = _rel(path, root)
        return any(rel == dep or rel.startswith(dep.rstrip("/") + "/") for dep in deps)

    problems = []
    needed: set[str] = set()
    for script in code.scripts:
        needed.add(_rel(script, root))
        if not covered(script):
            problems.append(
                f"{where}: missing {_rel(script, root)}, the script its cmd runs; add it to deps"
            )
        for module, importer in sorted(import_closure(script, code.search).items()):
            needed.add(_rel(module, root))
            if not covered(module):
                problems.append(
                    f"{where}: missing {_rel(module, root)}, which {_rel(importer, root)} "
                    "imports; add it to deps so editing it reruns the stage"
                )
    if not code.scripts:
        return problems
    for dep, index in deps.items():
        path = (root / dep).resolve()
        in_package = any(path.is_relative_to(s) for s in code.search)
        if in_package and path.is_dir() and not any(n.startswith(dep + "/") for n in needed):
            scripts = ", ".join(_rel(s, root) for s in code.scripts)
            problems.append(
                f"{doc.where(('stages', name, 'deps', index))}: lists {dep} but {scripts} never "
                "imports a module in it (directly or through other modules); remove it from deps"
            )
        if in_package and path.suffix == ".py" and dep not in needed:
            scripts = ", ".join(_rel(s, root) for s in code.scripts)
            problems.append(
                f"{doc.where(('stages', name, 'deps', index))}: lists {dep} but {scripts} never "
                "imports it (directly or through other modules); remove it from deps"
            )
    return problems


def stage_params_problems(doc: YamlDoc, root: Path, name: str) -> list[str]:
    """Every ``params:`` entry of the stage names a key that exists in its params file."""
    spec = doc.data["stages"][name]
    if not isinstance(spec, dict) or "foreach" in spec:
        return []
    base = root / str(spec.get("wdir", "."))
    problems: list[str] = []
    cache: dict[str, Any] = {}

    def check(file: str, keys: Iterable[str], path: JsonPath) -> None:
        if file not in cache:
            try:
                cache[file] = load_yaml(base / file, file).data
            except PipelineError as err:
                cache[file] = err
        data = cache[file]
        if isinstance(data, PipelineError):
            problems.append(f"{doc.where(path)}: params file {file} unusable: {data}")
            return
        known = _dotted_keys(data)
        for key in keys:
            if not _lookup(data, key)[0]:
                hint = did_you_mean(key, known, " (did you mean '{}'?)")
                problems.append(
                    f"{doc.where(path)}: '{key}' is not in {file}{hint}; add it to {file} "
                    "or fix the name"
                )

    for index, entry in enumerate(spec.get("params") or []):
        path = ("stages", name, "params", index)
        if isinstance(entry, str):
            check(PARAMS_YAML, [entry], path)
        elif isinstance(entry, dict):
            for file, keys in entry.items():
                if Path(str(file)).suffix not in (".yaml", ".yml", ".json"):
                    continue  # TOML/Python params files: left to DVC
                check(str(file), keys or [], (*path, str(file)))
    return problems


# -------------------------------------------------------------------------- thresholds


def _bounds(value: Any) -> tuple[float | None, float | None] | None:
    def number(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    if number(value):
        return float(value), None
    if (
        isinstance(value, dict)
        and value
        and set(value) <= {"min", "max"}
        and all(number(v) for v in value.values())
    ):
        low, high = value.get("min"), value.get("max")
        return (None if low is None else float(low)), (None if high is None else float(high))
    return None


def threshold_problems(root: Path, path: Path) -> list[str]:
    """Each metric named in the thresholds file is present and within its bounds."""
    label = str(path)
    try:
        doc = load_yaml(path, label)
    except PipelineError as err:
        return [str(err)]
    if not isinstance(doc.data, dict) or not doc.data:
        return [f"{label}: expected a mapping of metrics file -> {{metric: floor}}"]
    problems = []
    for file, bounds in doc.data.items():
        if not isinstance(bounds, dict) or not bounds:
            problems.append(f"{doc.where((str(file),))}: expected {{metric: floor}} under it")
            continue
        try:
            metrics = json.loads((root / str(file)).read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.append(f"{file}: not found (named in {label}); run `dvc repro` first")
            continue
        except (OSError, json.JSONDecodeError) as err:
            problems.append(f"{file}: not readable JSON ({err}); rerun the stage that writes it")
            continue
        for key, bound in bounds.items():
            limits = _bounds(bound)
            if limits is None:
                problems.append(
                    f"{doc.where((str(file), str(key)))}: expected a number (the floor) or "
                    f"{{min: x, max: y}}, got {_kind(bound)}"
                )
                continue
            present, value = _lookup(metrics, str(key))
            if not present:
                known = _dotted_keys(metrics)
                hint = did_you_mean(str(key), known, " (did you mean '{}'?)")
                problems.append(
                    f"{file}: no metric '{key}'{hint}, named in {label}; fix the name in {label}"
                )
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{file}: {key} is {_kind(value)}, not a number (see {label})")
                continue
            low, high = limits
            if low is not None and not value >= low:
                problems.append(
                    f"{file}: {key} = {value:g} is below the floor {low:g} set in {label}; "
                    "find what made it worse (`dvc metrics diff`) or lower the floor on purpose"
                )
            if high is not None and not value <= high:
                problems.append(
                    f"{file}: {key} = {value:g} is above the ceiling {high:g} set in {label}; "
                    "find what made it worse (`dvc metrics diff`) or raise the ceiling on purpose"
                )
    return problems


# -------------------------------------------------------------------------------- all


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)


def validate(
    root: Path,
    *,
    up_to_date: bool = False,
    thresholds: Path | None = None,
    schema: Path | None = None,
) -> Report:
    """Run every check on the project in ``root``; see the module docstring."""
    report = Report()
    try:
        checker = load_schema(schema)
        doc: YamlDoc | None = load_yaml(root / DVC_YAML, DVC_YAML)
    except PipelineError as err:
        report.problems.append(str(err))
        doc = None
    dvc_ok = False
    if doc is not None:
        found = schema_problems(doc, checker)
        if not found:  # DVC would fail on the same thing: one line per problem is enough
            found = dag_problems(root)
        report.problems += found
        dvc_ok = not found
        stages = doc.data.get("stages") if isinstance(doc.data, dict) else None
        if isinstance(stages, dict):
            deps_found = []
            for name in stages:
                deps_found += stage_deps_problems(doc, root, str(name))
                deps_found += stage_params_problems(doc, root, str(name))
            report.problems += deps_found
            if not deps_found:
                report.passed.append(f"deps and params of {len(stages)} stages")
        if dvc_ok:
            report.passed.insert(0, f"{DVC_YAML} (schema, DAG)")
    found = params_problems(root)
    report.problems += found
    if not found:
        report.passed.append(PARAMS_YAML)
    if up_to_date and dvc_ok:
        found = status_problems(root)
        report.problems += found
        if not found:
            report.passed.append("dvc status clean")
    if thresholds is not None:
        found = threshold_problems(root, thresholds)
        report.problems += found
        if not found:
            report.passed.append(f"thresholds in {thresholds}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline.tools.validate",
        description="Check dvc.yaml (schema, DAG, deps), params.yaml and optionally dvc "
        "status and metric thresholds; one 'error:' line per problem.",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="project directory")
    parser.add_argument(
        "--up-to-date", action="store_true", help="also require a clean `dvc status`"
    )
    parser.add_argument(
        "--thresholds", type=Path, help="YAML of metric bounds, e.g. .ci/thresholds.yaml"
    )
    parser.add_argument("--schema", type=Path, help="dvc.yaml JSON schema (default: bundled)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = validate(
            args.root,
            up_to_date=args.up_to_date,
            thresholds=args.thresholds,
            schema=args.schema,
        )
    except PipelineError as err:
        report = Report([str(err)])
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    if report.problems:
        return EXIT_PROBLEMS
    print(f"validate: ok: {', '.join(report.passed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
