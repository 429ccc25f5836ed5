"""``make validate``, CI's first step: ``dvc.yaml`` by DVC's own schema, resolver, DAG and params
keys; each stage's deps are its script and the package folders its imports reach, nothing more;
``params.yaml`` is valid. One ``error:`` line a problem, at its line."""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import modulefinder
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_pipeline.core.cli import EXIT_BAD_INPUT, entry_point
from mnist_pipeline.core.errors import PipelineError, dotted
from mnist_pipeline.core.io import read_json
from mnist_pipeline.core.params import read_yaml, read_yaml_text
from mnist_pipeline.tools import params as schema

DVC_YAML, PARAMS_YAML, PACKAGE = "dvc.yaml", "params.yaml", "src/mnist_pipeline"
MAX_VALUES = 100_000  # values a YAML file may expand to through its aliases
DAG_FAILED = f"{DVC_YAML}: DVC cannot build the pipeline: {{}}; fix dvc.yaml (check with `dvc dag`)"
STATUS_FAILED = "dvc status failed: {}; fix that first"


def walk(data: Any, path: Sequence[str | int]) -> tuple[bool, Any, str]:
    """``(found, value, ":57")``: the value at ``path`` and the line of the deepest key found."""
    line = ""
    for part in path:
        try:
            key = int(part) if isinstance(data, list) else part
            with contextlib.suppress(AttributeError, KeyError, IndexError, TypeError):
                line = f":{(data.lc.item if isinstance(data, list) else data.lc.key)(key)[0] + 1}"
            data = data[key]
        except (KeyError, IndexError, TypeError, ValueError):
            return False, None, line
    return True, data, line


def where(label: str, data: Any, path: Sequence[str | int]) -> str:
    """``dvc.yaml:57: stages.train.outz``."""
    return f"{label}{walk(data, path)[2]}: {dotted(path)}"


def expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """How many values ``node`` holds with its aliases copied out, in time linear in the file."""
    if id(node) not in sizes:
        inner = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        nested = isinstance(node, dict | list)
        sizes[id(node)] = 1 + (sum(expanded_size(n, sizes) for n in inner) if nested else 0)
    return sizes[id(node)]


def load_yaml(path: Path, label: str) -> Any:
    """YAML through DVC's loader (ruamel, lines kept), bounded in size, nesting and aliases."""
    from dvc.utils.serialize import YAMLFileCorruptedError, parse_yaml_for_update

    try:
        data = parse_yaml_for_update(read_yaml_text(path, label), label)
    except YAMLFileCorruptedError as err:
        mark = getattr(err.__cause__, "problem_mark", None)
        problem = " ".join((getattr(err.__cause__, "problem", None) or "syntax error").split())
        line = f":{mark.line + 1}" if mark is not None else ""
        raise PipelineError(f"{label}{line}: not valid YAML ({problem}); fix the syntax") from err
    if expanded_size(data, {}) > MAX_VALUES:  # a "billion laughs"
        raise PipelineError(
            f"{label}: its aliases expand it to over {MAX_VALUES:,} values; remove them"
        )
    return data


def with_dvc(root: Path, use: Callable[[Any], Any], fail: str, data: Any = None) -> Any:
    """``use(repo)`` on the DVC repo in ``root``; a schema error of dvc.yaml becomes a line at
    its line in ``data``, any other DVC error ``fail`` with DVC's text."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.utils.strictyaml import YAMLValidationError

    try:
        with contextlib.chdir(root), Repo(".") as repo:  # paths as DVC prints them
            return use(repo)
    except YAMLValidationError as err:
        problems = [
            f"{where(DVC_YAML, data, e.path)}: {e.error_message} (DVC's dvc.yaml schema)"
            for e in err.exc.errors
        ]
        raise PipelineError("\n".join(problems)) from err
    except DvcException as err:
        raise PipelineError(fail.format(textwrap.shorten(str(err), 300).rstrip("."))) from err


def status_problems(root: Path) -> list[str]:
    """One line per stage that ``dvc status`` does not consider up to date."""
    problems = []
    for stage, changes in with_dvc(root, lambda repo: repo.status(), STATUS_FAILED).items():
        parts = []
        for change in changes:  # {"changed deps": {path: state, ...}}, or "always changed"
            for kind, files in change.items() if isinstance(change, dict) else [(change, {})]:
                named = ", ".join(f"{path} {state}" for path, state in files.items())
                parts.append(f"{kind}: {named}" if named else kind)
        problems.append(
            f"dvc status: stage '{stage}' is not up to date ({'; '.join(parts)}); "
            "run `dvc repro` and commit dvc.lock"
        )
    return problems


def imported_files(script: Path, root: Path) -> list[str]:
    """The project's files ``script`` imports, directly or not, relative to ``root``
    (``modulefinder`` reads the bytecode, never runs it)."""
    finder = modulefinder.ModuleFinder([str(script.parent), str(root / "src")])  # no stdlib
    finder.run_script(str(script))
    files = [module.__file__ or "" for module in finder.modules.values()]  # builtins have none
    return sorted(Path(f).relative_to(root).as_posix() for f in files if f.endswith(".py"))


def holds_code(path: Path) -> bool:
    """Whether a module holds more than a docstring (one that does not changes no output)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return len(tree.body) > (0 if ast.get_docstring(tree) is None else 1)


def stage_scripts(cmd: str | list[str], root: Path) -> list[str]:
    """The project's ``.py`` files a ``cmd`` runs: one linear split, and ``os.path.isfile``
    (False, not an error, for a name too long), so a 1 MB word is fine."""
    words = re.split(r"[\s'\"]+", " ".join(cmd) if isinstance(cmd, list) else str(cmd))
    return [word for word in words if word.endswith(".py") and os.path.isfile(root / word)]


def stage_problems(data: Any, root: Path, name: str, spec: dict[str, Any]) -> list[str]:
    """The stage's deps list its scripts and each package folder their imports reach, and no
    other package folder."""
    source = name.split("@")[0]  # a foreach stage's lines are its template's
    deps = [Path(dep) for dep in spec.get("deps") or []]
    here = where(DVC_YAML, data, ("stages", source, "deps" if deps else "cmd"))
    here += f" ({name})" if source != name else ""
    scripts = stage_scripts(spec["cmd"], root)
    needed = {script: "the script its cmd runs" for script in scripts}
    for script in scripts:
        for path in imported_files(root / script, root):
            needed.setdefault(path, f"which {script} imports")
    problems = [
        f"{here}: missing {path}, {why}; add it to deps so editing it reruns the stage"
        for path, why in needed.items()
        if not any(Path(path).is_relative_to(dep) for dep in deps) and holds_code(root / path)
    ]
    for index, dep in enumerate(deps):
        unused = not any(Path(path).is_relative_to(dep) for path in needed)
        if scripts and dep.is_relative_to(PACKAGE) and unused:
            problems.append(
                f"{where(DVC_YAML, data, ('stages', source, 'deps', index))}: lists {dep} but "
                f"{', '.join(scripts)} never imports a module in it (directly or through "
                "other modules); remove it from deps"
            )
    return problems


def params_problems(root: Path) -> list[str]:
    """One line per bad key of params.yaml, at its line; a file that cannot be read raises."""
    lines, values = load_yaml(root / PARAMS_YAML, PARAMS_YAML), read_yaml(root / PARAMS_YAML)
    found = []
    for problem in schema.problems(values):
        key = re.match(r"([\w.-]+?)(?:\[\d+\])?: ", problem)
        found.append(f"{PARAMS_YAML}{walk(lines, key[1].split('.'))[2] if key else ''}: {problem}")
    return found


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def threshold_problems(root: Path, path: Path) -> list[str]:
    """Each metric the thresholds file names (dotted: into nested JSON) is at least its floor."""
    doc, problems = load_yaml(path, str(path)), []
    if not isinstance(doc, dict) or not all(
        isinstance(floors, dict) and all(map(number, floors.values())) for floors in doc.values()
    ):
        return [f"{path}: expected a mapping of metrics file -> {{metric: floor (a number)}}"]
    for file, floors in doc.items():
        if not (root / file).is_file():
            problems.append(f"{file}: not found (named in {path}); run `dvc repro` first")
            continue
        metrics = read_json(root / file)  # bounded in size, keys unique
        for key, floor in floors.items():
            value = walk(metrics, str(key).split("."))[1]
            if not number(value):
                problems.append(
                    f"{file}: no numeric metric '{key}', named in {path}; fix the name in {path}"
                )
            elif value < floor:
                problems.append(
                    f"{file}: {key} = {value:g} is below the floor {floor:g} set in {path}; "
                    "find what made it worse (`dvc metrics diff`) or lower the floor on purpose"
                )
    return problems


def lines(check: Callable[[], list[str]]) -> list[str]:
    """The problems ``check`` returns, or the lines of the one it raises."""
    try:
        return check()
    except PipelineError as err:
        return str(err).splitlines()


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Every check, one ``error:`` line a problem. DVC reads params.yaml too (the stages'
    ``vars``): while it cannot be read, DVC's checks wait."""
    from dvc.parsing import DataResolver

    parser = argparse.ArgumentParser(
        description="Check dvc.yaml (schema, DAG, deps), params.yaml and optionally dvc "
        "status and metric floors; one 'error:' line per problem.",
    )
    parser.add_argument("--up-to-date", action="store_true", help="also require `dvc status`")
    parser.add_argument("--thresholds", type=Path, help="YAML of metric floors")
    args, data, resolved = parser.parse_args(argv), None, None
    root = Path.cwd()  # modulefinder's paths are absolute

    def stages(repo: Any) -> dict[str, Any]:
        repo.index.check_graph()
        for dep in repo.index.params:
            dep.get_hash()  # DVC's error for a key missing from its params file
        return DataResolver(repo, ".", data).resolve()["stages"]

    try:
        params, readable = params_problems(root), True
    except PipelineError as err:
        params, readable = [str(err)], False
    found = {f"{DVC_YAML} (schema, DAG)": [], PARAMS_YAML: params}
    try:
        data = load_yaml(root / DVC_YAML, DVC_YAML)
        if not isinstance(data, dict) or not data.get("stages"):
            raise PipelineError(f"{DVC_YAML}: no stages; define the pipeline under 'stages:'")
        resolved = with_dvc(root, stages, DAG_FAILED, data) if readable else None
    except PipelineError as err:
        found[f"{DVC_YAML} (schema, DAG)"] = str(err).splitlines()
    if resolved is not None:
        found[f"deps of {len(resolved)} stages"] = lines(
            lambda: [p for n, s in resolved.items() for p in stage_problems(data, root, n, s)]
        )
        if args.up_to_date:
            found["dvc status clean"] = lines(lambda: status_problems(root))
    if args.thresholds is not None:
        found[f"thresholds in {args.thresholds}"] = lines(
            lambda: threshold_problems(root, args.thresholds)
        )
    for problem in (problems := [p for check in found.values() for p in check]):
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    print(f"validate: ok: {', '.join(found)}")
    return 0


if __name__ == "__main__":  # .ci/pipeline.sh runs it so
    raise SystemExit(main())
