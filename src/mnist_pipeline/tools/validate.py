"""``make validate``: what DVC does not check itself. Each stage's deps are its script and the
package folders its imports reach, nothing more; ``params.yaml`` is valid. One ``error:`` line
a problem. (Whether the lock is up to date is DVC's own check: ``dvc status -q``.)"""

from __future__ import annotations

import argparse
import ast
import contextlib
import modulefinder
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_pipeline.core.cli import EXIT_BAD_INPUT, entry_point
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.params import read_yaml, read_yaml_text
from mnist_pipeline.tools import params as schema

PACKAGE, PARAMS = "src/mnist_pipeline", Path("params.yaml")


def with_dvc(root: Path, use: Callable[[Any], Any]) -> Any:
    """``use(repo)`` on ``root``'s DVC repo; DVC's error (schema, YAML, DAG, params) in a line."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with contextlib.chdir(root), Repo(".") as repo:  # paths as DVC prints them
            return use(repo)
    except DvcException as err:
        cause = getattr(err.__cause__, "problem", None) or err.__cause__  # ruamel's, voluptuous's
        text = " ".join(str(err).rstrip(".").split()) + (f": {cause}" if cause else "")
        raise PipelineError(
            f"dvc.yaml: DVC cannot build the pipeline: {text}; fix dvc.yaml (check with `dvc dag`)"
        ) from err


def stages(repo: Any) -> dict[str, tuple[str, list[str]]]:
    """``{name: (cmd, deps)}`` as DVC resolves them (``vars``, ``${...}``, ``foreach``)."""
    repo.index.check_graph()
    for dep in repo.index.params:
        dep.get_hash()  # DVC's error for a key missing from its params file
    return {s.addressing: (s.cmd, [d.def_path for d in s.deps]) for s in repo.index.stages}


def imported_files(script: Path, root: Path) -> list[str]:
    """The project's files ``script`` imports, directly or not (``modulefinder``: never run)."""
    finder = modulefinder.ModuleFinder([str(script.parent), str(root / "src")])  # no stdlib
    finder.run_script(str(script))
    files = [module.__file__ or "" for module in finder.modules.values()]  # builtins have none
    return sorted(Path(f).relative_to(root).as_posix() for f in files if f.endswith(".py"))


def holds_code(path: Path) -> bool:
    """Whether a module holds more than a docstring (one that does not changes no output)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return len(tree.body) > (0 if ast.get_docstring(tree) is None else 1)


def stage_scripts(cmd: str | list[str], root: Path) -> list[str]:
    """The project's ``.py`` files a ``cmd`` runs, in one linear split (a 1 MB word is fine)."""
    words = re.split(r"[\s'\"]+", " ".join(cmd) if isinstance(cmd, list) else str(cmd))
    return [word for word in words if word.endswith(".py") and os.path.isfile(root / word)]


def stage_problems(root: Path, name: str, cmd: str | list[str], deps: list[str]) -> list[str]:
    """Stage ``name``'s deps list its scripts and the package folders they import, no other."""
    scripts = stage_scripts(cmd, root)
    needed = {script: "the script its cmd runs" for script in scripts}
    for script in scripts:
        for path in imported_files(root / script, root):
            needed.setdefault(path, f"which {script} imports")
    here = f"dvc.yaml: stages.{name}.deps"
    problems = [
        f"{here}: missing {path}, {why}; add it to deps so editing it reruns the stage"
        for path, why in needed.items()
        if not any(Path(path).is_relative_to(dep) for dep in deps) and holds_code(root / path)
    ]
    unused = [dep for dep in deps if not any(Path(p).is_relative_to(dep) for p in needed)]
    return problems + [
        f"{here}: lists {dep} but {', '.join(scripts)} never imports a module in it (directly "
        "or through other modules); remove it from deps"
        for dep in unused
        if scripts and Path(dep).is_relative_to(PACKAGE)
    ]


def deps_problems(root: Path) -> list[str]:
    """Every stage's deps problems, once DVC builds the pipeline."""
    if not (found := with_dvc(root, stages)):
        return ["dvc.yaml: no stages; define the pipeline under 'stages:'"]
    return [p for name, spec in found.items() for p in stage_problems(root, name, *spec)]


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Every check, one ``error:`` line a problem; DVC's wait for a valid params.yaml (it reads
    it too, for ``params`` and ``vars``: an alias bomb stops here, in seconds)."""
    parser = argparse.ArgumentParser(description="Check each stage's deps and params.yaml.")
    parser.parse_args(argv)
    root = Path.cwd()  # modulefinder's paths are absolute
    try:
        params = [f"params.yaml: {p}" for p in schema.problems(read_yaml(PARAMS))]
    except PipelineError as err:
        params = [str(err)]
    try:
        read_yaml_text(Path("dvc.yaml"))  # bounded nesting first: DVC's loader recurses
        pipeline = [] if params else deps_problems(root)
    except PipelineError as err:
        pipeline = [str(err)]
    found = {"dvc.yaml (schema, DAG, deps)": pipeline, "params.yaml": params}
    for problem in (problems := [p for check in found.values() for p in check]):
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    print(f"validate: ok: {', '.join(found)}")
    return 0
