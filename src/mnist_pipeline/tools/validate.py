"""Is the pipeline definition sound? ``make validate``, and CI's first step.

    python -m mnist_pipeline validate [--root DIR] [--up-to-date] [--thresholds FILE]

Checks ``dvc.yaml`` with DVC's own loader, schema, resolver and DAG, every key of
``params.yaml``, and that each stage's deps are its script and the package folders its imports
reach, nothing else. Options: a clean ``dvc status`` and metric bounds (``--thresholds``:
metrics file -> ``{metric: floor}`` or ``{metric: {min, max}}``). One ``error:`` line a problem.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import modulefinder
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_pipeline.core.cli import EXIT_BAD_INPUT, entry_point
from mnist_pipeline.core.errors import PipelineError, dotted, printable
from mnist_pipeline.core.io import read_json
from mnist_pipeline.learning import config
from mnist_pipeline.learning.config import did_you_mean

DVC_YAML = "dvc.yaml"
PARAMS_YAML = "params.yaml"
PACKAGE = "src/mnist_pipeline"
MAX_LISTED = 4  # changed files named per `dvc status` line before "and N more"
HINT = " (did you mean '{}'?)"  # after a key that is not there
DAG = f"{DVC_YAML} (schema, DAG)"  # the check that DVC can load and link every stage


def _lookup(data: Any, path: Sequence[str | int]) -> tuple[bool, Any]:
    """``(True, value)`` at ``path`` (list items by number, "5" too), else ``(False, None)``."""
    node = data
    for part in path:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return False, None
    return True, node


def line_of(data: Any, path: Sequence[str | int]) -> str:
    """``:57``: the line of the deepest key or item on ``path`` that ruamel recorded, or ""."""
    line, node = "", data
    for part in path:
        try:
            line = f":{(node.lc.item if isinstance(node, list) else node.lc.key)(part)[0] + 1}"
            node = node[part]
        except (AttributeError, KeyError, IndexError, TypeError):
            break
    return line


def where(label: str, data: Any, path: Sequence[str | int]) -> str:
    """``dvc.yaml:57: stages.train.outz``."""
    return f"{label}{line_of(data, path)}: {dotted(path) or '(top level)'}"


def load_yaml(path: Path, label: str) -> Any:
    """YAML through DVC's loader (ruamel, lines kept), bounded in size and nesting."""
    from dvc.utils.serialize import YAMLFileCorruptedError, parse_yaml_for_update

    from mnist_pipeline.core.io import read_yaml_text

    if not path.is_file():
        raise PipelineError(f"{label}: file not found in {path.parent}; pass --root DIR")
    text = read_yaml_text(path, label)
    try:
        return parse_yaml_for_update(text, label)
    except YAMLFileCorruptedError as err:
        cause = err.__cause__
        mark = getattr(cause, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = " ".join((getattr(cause, "problem", None) or "syntax error").split())
        raise PipelineError(
            f"{label}{line}: not valid YAML ({printable(problem)}); fix the syntax"
        ) from err


def dvc_yaml(root: Path) -> tuple[Any, list[str]]:
    """dvc.yaml's data, or ``None`` and the problems DVC's schema finds in it."""
    from dvc.schema import COMPILED_MULTI_STAGE_SCHEMA, STAGE_DEFINITION
    from voluptuous import MultipleInvalid

    try:
        data = load_yaml(root / DVC_YAML, DVC_YAML)
        if not isinstance(data, dict) or not data.get("stages"):
            return None, [f"{DVC_YAML}: no stages; define the pipeline under 'stages:'"]
        COMPILED_MULTI_STAGE_SCHEMA(data)  # as DVC checks it (the result drops ruamel's lines)
        return data, []
    except MultipleInvalid as err:
        problems = []
        for error in err.errors:
            path, message = list(error.path), error.error_message
            if message == "extra keys not allowed":
                allowed = [str(k) for k in STAGE_DEFINITION] if len(path) == 3 else []
                message = f"unknown key {path[-1]!r}{did_you_mean(str(path[-1]), allowed)}"
                message += f" (allowed: {', '.join(allowed)})" if allowed else ""
            else:
                message = f"{message}, got {_lookup(data, path)[1]!r}"
            problems.append(f"{where(DVC_YAML, data, path)}: {message} (DVC's dvc.yaml schema)")
        return None, problems
    except PipelineError as err:
        return None, [str(err)]


def _with_dvc(
    root: Path, use: Callable[[Any], Any], fail: str, fix: str, **kw: Any
) -> tuple[Any, list[str]]:
    """``(use(repo), [])`` on the DVC repo in ``root``, or ``(None, [fail DVC's error fix])``."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with contextlib.chdir(root), Repo(".", **kw) as repo:  # stage names as DVC prints them
            return use(repo), []
    except DvcException as err:
        text = " ".join(str(err).split())  # one line, bounded
        return None, [f"{fail}{text if len(text) <= 300 else text[:297] + '...'}{fix}"]


def dag_problems(root: Path) -> list[str]:
    """DVC loads every stage and builds the graph (cycles, overlapping outputs, ...)."""
    fail = f"{DVC_YAML}: DVC cannot build the pipeline: "
    fix = f"; fix {DVC_YAML} (check with `dvc dag`)"
    return _with_dvc(root, lambda repo: repo.index.check_graph(), fail, fix)[1]


def status_problems(root: Path) -> list[str]:
    """One line per stage that ``dvc status`` does not consider up to date."""
    status, problems = _with_dvc(
        root, lambda repo: repo.status(), "dvc status failed: ", "; fix that first"
    )
    for stage, changes in (status or {}).items():
        parts = []
        for change in changes:  # "always changed", or {"changed deps": {path: state, ...}}
            for kind, files in change.items() if isinstance(change, dict) else [(change, {})]:
                named = [f"{path} {state}" for path, state in files.items()]
                more = f" and {len(named) - MAX_LISTED} more" if len(named) > MAX_LISTED else ""
                parts.append(f"{kind}: {', '.join(named[:MAX_LISTED])}{more}" if named else kind)
        problems.append(
            f"dvc status: stage '{stage}' is not up to date ({'; '.join(parts)}); "
            "run `dvc repro` and commit dvc.lock"
        )
    return problems


def params_problems(root: Path) -> list[str]:
    """One line per bad key of params.yaml, at its line."""
    from mnist_pipeline.core.io import read_yaml

    try:
        lines, values = load_yaml(root / PARAMS_YAML, PARAMS_YAML), read_yaml(root / PARAMS_YAML)
    except PipelineError as err:
        return [str(err)]
    found = []
    for problem in config.problems(values):
        key = re.match(r"([\w.-]+?)(?:\[\d+\])?: ", problem)
        line = line_of(lines, key.group(1).split(".")) if key else ""
        found.append(f"{PARAMS_YAML}{line}: {problem}")
    return found


def holds_code(path: Path) -> bool:
    """Whether a module holds code besides its docstring: a docstring-only one (the package's
    ``__init__.py``) cannot change an output, so it need not be a dep."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return len(tree.body) > (0 if ast.get_docstring(tree) is None else 1)


class _Importers(modulefinder.ModuleFinder):
    """``modulefinder`` (reads the bytecode, never runs it) noting who first imports each file."""

    def __init__(self, search: Sequence[Path]) -> None:
        super().__init__([str(base) for base in search])  # only ours: no stdlib, no torch
        self.importer: dict[Path, Path] = {}

    def import_hook(self, name: str, caller: Any = None, *rest: Any, **level: Any) -> Any:
        known = set(self.modules)
        try:
            return super().import_hook(name, caller, *rest, **level)
        finally:  # what this import loaded, the modules it imports having noted theirs first
            for new in self.modules.keys() - known:
                file = self.modules[new].__file__ or ""  # a builtin (sys, time) has none
                if file.endswith(".py"):
                    self.importer.setdefault(Path(file), Path(caller.__file__))


def import_closure(script: Path, search: Sequence[Path]) -> dict[Path, Path]:
    """Every project module ``script`` imports, transitively: module -> who imports it."""
    finder = _Importers(search)
    finder.run_script(str(script))
    return finder.importer


def _kept(root: Path) -> Callable[[str], bool]:
    """Whether git holds a path (or would: there, not ignored) or ``dvc add`` tracks it."""
    from dvc.scm import SCM, SCMError

    try:
        scm = SCM(str(root))
    except SCMError:
        return lambda path: (root / path).exists()
    return lambda path: (
        scm.is_tracked(path)
        or ((root / path).exists() and not scm.is_ignored(path))
        or (root / f"{path}.dvc").is_file()
    )


def resolved_stages(data: Any, root: Path) -> tuple[dict[str, Any], list[str]]:
    """dvc.yaml's stages as DVC's resolver runs them (``${...}`` filled, ``foreach`` expanded
    as ``name@key``), or one line saying why it cannot."""
    from dvc.parsing import DataResolver

    fail = f"{DVC_YAML}: DVC cannot resolve its stages: "
    fix = "; fix the vars or ${...} it names (check with `dvc dag`)"
    stages, problems = _with_dvc(
        root, lambda repo: DataResolver(repo, ".", data).resolve(), fail, fix, uninitialized=True
    )
    return (stages or {}).get("stages", {}), problems


def command_words(cmd: str | list[str]) -> list[str]:
    """The words of a stage's ``cmd`` as the shell splits them, in linear time (not ``shlex``:
    quadratic on a long word)."""
    text = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    words = re.findall(r"""(?:[^\s'"]|'[^']*'|"[^"]*")+""", text)
    unquote = re.compile(r"'([^']*)'|\"([^\"]*)\"")
    return [unquote.sub(lambda m: m.group(1) or m.group(2) or "", word) for word in words]


def deps_problems(data: Any, root: Path) -> list[str]:
    """Each stage lists its code (script + imported package folders) and nothing stale."""
    root = root.resolve()
    stages, problems = resolved_stages(data, root)
    outputs = [  # every stage's outs, metrics and plots
        os.path.normpath(str(entry if isinstance(entry, str) else next(iter(entry))))
        for spec in stages.values()
        for kind in ("outs", "metrics", "plots")
        for entry in spec.get(kind) or []
    ]
    kept = _kept(root)

    def under(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder.rstrip("/") + "/")

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    for name, spec in stages.items():
        source = name.split("@")[0]  # a foreach/matrix stage's lines are its template's
        deps = [os.path.normpath(str(d)) for d in spec.get("deps") or []]
        here = where(DVC_YAML, data, ("stages", source, "deps" if "deps" in spec else "cmd"))
        here += f" ({name})" if source != name else ""
        words = command_words(spec["cmd"])
        scripts = [root / w for w in words if w.endswith(".py") and (root / w).is_file()]
        needed = {rel(script) for script in scripts}
        problems += [
            f"{here}: missing {path}, the script its cmd runs; add it to deps"
            for path in sorted(needed)
            if not any(under(path, dep) for dep in deps)
        ]
        for script in scripts:
            closure = import_closure(script, [script.parent, root / "src"])
            for module, importer in sorted(closure.items()):
                needed.add(rel(module))
                if not any(under(rel(module), dep) for dep in deps) and holds_code(module):
                    problems.append(
                        f"{here}: missing {rel(module)}, which {rel(importer)} imports; add it "
                        "to deps so editing it reruns the stage"
                    )
        for index, dep in enumerate(deps):
            at = where(DVC_YAML, data, ("stages", source, "deps", index))
            if scripts and under(dep, PACKAGE) and not any(under(n, dep) for n in needed):
                problems.append(
                    f"{at}: lists {dep} but {', '.join(rel(s) for s in scripts)} never imports "
                    "a module in it (directly or through other modules); remove it from deps"
                )
            produced = any(under(dep, out) or under(out, dep) for out in outputs)
            if not produced and not kept(dep):
                problems.append(
                    f"{at}: nothing produces {dep}: no stage writes it and git does not hold it, "
                    "so a fresh clone cannot run the stage; fix the path, commit the file, "
                    "`dvc add` it or add the stage that writes it"
                )
        problems += _stage_params_problems(data, root, source, spec)
    return problems


def _stage_params_problems(data: Any, root: Path, name: str, spec: dict[str, Any]) -> list[str]:
    """Every ``params:`` entry names a key that exists in its params file."""
    problems: list[str] = []
    for index, entry in enumerate(spec.get("params") or []):
        path = ("stages", name, "params", index)
        files = {PARAMS_YAML: [entry]} if isinstance(entry, str) else entry
        for file, keys in files.items():
            at = where(DVC_YAML, data, path if isinstance(entry, str) else (*path, file))
            if Path(file).suffix not in (".yaml", ".yml", ".json"):
                continue  # TOML/Python params files: left to DVC
            try:
                values = load_yaml(root / file, file)
            except PipelineError as err:
                problems.append(f"{at}: params file {file} unusable: {err}")
                continue
            problems += [
                f"{at}: '{key}' is not in {file}"
                f"{did_you_mean(key, _dotted_keys(values), HINT)}; add it to "
                f"{file} or fix the name"
                for key in keys or []
                if not _lookup(values, key.split("."))[0]
            ]
    return problems


def _dotted_keys(data: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            keys += [f"{prefix}{key}", *_dotted_keys(value, f"{prefix}{key}.")]
    return keys


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def threshold_problems(root: Path, path: Path) -> list[str]:
    """Each metric named in the thresholds file is present and within its bounds."""
    label = str(path)
    try:
        doc = load_yaml(path, label)
    except PipelineError as err:
        return [str(err)]
    if not isinstance(doc, dict) or not doc:
        return [f"{label}: expected a mapping of metrics file -> {{metric: floor}}"]
    problems = []
    for file, bounds in doc.items():
        if not isinstance(bounds, dict) or not bounds:
            problems.append(f"{where(label, doc, (file,))}: expected {{metric: floor}} under it")
            continue
        if not (root / str(file)).is_file():
            problems.append(f"{file}: not found (named in {label}); run `dvc repro` first")
            continue
        try:
            metrics = read_json(root / str(file))  # bounded in size, keys unique
        except PipelineError as err:
            problems.append(str(err))
            continue
        for key, bound in bounds.items():
            ranged = isinstance(bound, dict) and set(bound) <= {"min", "max"}  # else a floor
            low, high = (bound.get("min"), bound.get("max")) if ranged else (bound, None)
            if not any(_number(b) for b in (low, high)):
                problems.append(
                    f"{where(label, doc, (file, key))}: expected a number (the floor) or "
                    f"{{min: x, max: y}}, got {bound!r}"
                )
                continue
            present, value = _lookup(metrics, str(key).split("."))
            if not present:
                hint = did_you_mean(str(key), _dotted_keys(metrics), HINT)
                problems.append(
                    f"{file}: no metric '{key}'{hint}, named in {label}; fix the name in {label}"
                )
            elif not _number(value):
                problems.append(f"{file}: {key} is {value!r}, not a number (see {label})")
            elif low is not None and not value >= low:
                problems.append(
                    f"{file}: {key} = {value:g} is below the floor {low:g} set in {label}; "
                    "find what made it worse (`dvc metrics diff`) or lower the floor on purpose"
                )
            elif high is not None and not value <= high:
                problems.append(
                    f"{file}: {key} = {value:g} is above the ceiling {high:g} set in {label}; "
                    "find what made it worse (`dvc metrics diff`) or raise the ceiling on purpose"
                )
    return problems


def validate(
    root: Path, *, up_to_date: bool = False, thresholds: Path | None = None
) -> tuple[list[str], list[str]]:
    """Every check on the project in ``root``: (problems, names of the checks passed)."""
    data, problems = dvc_yaml(root)
    found: dict[str, list[str]] = {}  # check -> its problems, in the order they run
    if data is not None:
        found[DAG] = dag_problems(root)
        found[f"deps and params of {len(data['stages'])} stages"] = deps_problems(data, root)
    found[PARAMS_YAML] = params_problems(root)
    if up_to_date and found.get(DAG) == []:  # dvc.yaml is sound: its status means something
        found["dvc status clean"] = status_problems(root)
    if thresholds is not None:
        found[f"thresholds in {thresholds}"] = threshold_problems(root, thresholds)
    problems += [problem for check in found.values() for problem in check]
    return problems, [name for name, check in found.items() if not check]


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check dvc.yaml (schema, DAG, deps), params.yaml and optionally dvc "
        "status and metric thresholds; one 'error:' line per problem.",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="project directory")
    parser.add_argument("--up-to-date", action="store_true", help="also require `dvc status`")
    parser.add_argument("--thresholds", type=Path, help="YAML of metric bounds")
    args = parser.parse_args(argv)
    problems, passed = validate(args.root, up_to_date=args.up_to_date, thresholds=args.thresholds)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    print(f"validate: ok: {', '.join(passed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
