"""dvc.yaml is complete: every module a stage imports is a dep, every params key exists.

A stage whose code can change without DVC noticing is a broken pipeline. The import
closure and the checks live in ``mnist_pipeline.tools.validate`` (``make validate`` runs them
too); these tests hold the real dvc.yaml to them, stage by stage.
"""

from pathlib import Path

import pytest

from mnist_pipeline.tools.validate import (
    DVC_YAML,
    import_closure,
    load_schema,
    load_yaml,
    schema_problems,
    stage_code,
    stage_deps_problems,
    stage_params_problems,
)

REPO = Path(__file__).resolve().parents[1]
DOC = load_yaml(REPO / DVC_YAML, DVC_YAML)
STAGES = DOC.data["stages"]


def test_stages_are_the_five_in_order() -> None:
    assert list(STAGES) == ["download", "preprocess", "train", "evaluate", "report"]


def test_dvc_yaml_follows_the_schema() -> None:
    assert schema_problems(DOC, load_schema()) == []


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_runs_its_own_script(stage: str) -> None:
    code = stage_code(REPO, STAGES[stage])
    assert code.scripts == [REPO / "stages" / f"{stage}.py"]
    assert REPO / "src" in code.search


@pytest.mark.parametrize("stage", list(STAGES))
def test_deps_cover_every_imported_module(stage: str) -> None:
    assert stage_deps_problems(DOC, REPO, stage) == []


@pytest.mark.parametrize("stage", list(STAGES))
def test_params_entries_exist(stage: str) -> None:
    assert stage_params_problems(DOC, REPO, stage) == []


def test_closure_follows_imports_transitively() -> None:
    code = stage_code(REPO, STAGES["download"])
    closure = import_closure(code.scripts[0], code.search)
    package = REPO / "src" / "mnist_pipeline"
    # download.py imports sources, which imports io, which imports errors.
    assert closure[package / "data" / "sources.py"] == REPO / "stages" / "download.py"
    assert package / "core" / "errors.py" in closure and package / "__init__.py" in closure


@pytest.mark.parametrize("stage", list(STAGES))
def test_no_stage_imports_the_validator(stage: str) -> None:
    """``validate`` shells out to dvc and reads the whole project: never a stage's code."""
    code = stage_code(REPO, STAGES[stage])
    closure = import_closure(code.scripts[0], code.search)
    assert REPO / "src" / "mnist_pipeline" / "tools" / "validate.py" not in closure


def test_metrics_and_plots_are_uncached() -> None:
    for stage in STAGES.values():
        for kind in ("metrics", "plots"):
            for entry in stage.get(kind, []):
                (options,) = entry.values()
                assert options.get("cache") is False
