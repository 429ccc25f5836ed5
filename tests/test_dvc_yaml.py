"""dvc.yaml is complete: every module a stage imports is a dep, every params key exists.

A stage whose code can change without DVC noticing is a broken pipeline.
"""

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "mnist_pipeline"
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = REPO / "src" / Path(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_modules(path: Path) -> set[str]:
    """Project modules a file imports (any scope), including packages on the way down."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                target = module_path(candidate)
                if target is not None and target.exists():
                    found.add(candidate)
    return found


def closure(script: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [script]
    while todo:
        current = todo.pop()
        for name in imported_modules(current):
            target = module_path(name)
            assert target is not None
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


STAGES = DVC["stages"]


def test_stages_are_the_five_in_order() -> None:
    assert list(STAGES) == ["download", "preprocess", "train", "evaluate", "report"]


@pytest.mark.parametrize("stage", list(STAGES))
def test_deps_cover_every_imported_module(stage: str) -> None:
    spec = STAGES[stage]
    script = REPO / "stages" / f"{stage}.py"
    assert f"stages/{stage}.py" in spec["cmd"]
    deps = {d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]}
    assert f"stages/{stage}.py" in deps
    needed = {str(p.relative_to(REPO)) for p in closure(script)}
    missing = needed - deps
    assert not missing, f"{stage}: imports {sorted(missing)} but does not list them in deps"
    listed_modules = {d for d in deps if d.startswith("src/")}
    extra = listed_modules - needed
    assert not extra, f"{stage}: lists {sorted(extra)} as deps but never imports them"


@pytest.mark.parametrize("stage", list(STAGES))
def test_params_entries_exist(stage: str) -> None:
    for entry in STAGES[stage].get("params", []):
        node = PARAMS
        for part in entry.split("."):
            assert isinstance(node, dict) and part in node, f"{stage}: params '{entry}' missing"
            node = node[part]


def test_metrics_and_plots_are_uncached() -> None:
    for stage in STAGES.values():
        for kind in ("metrics", "plots"):
            for entry in stage.get(kind, []):
                (options,) = entry.values()
                assert options.get("cache") is False
