"""dvc.yaml is complete: every module a stage imports is a dep, every params key exists.

A stage whose code can change without DVC noticing is a broken pipeline. The import
closure and the checks live in ``mnist_pipeline.tools.validate`` (``make validate`` runs them
too); these tests hold the real dvc.yaml to them.
"""

from pathlib import Path

from mnist_pipeline.tools.validate import deps_problems, dvc_yaml, import_closure

REPO = Path(__file__).resolve().parents[1]
DATA, SCHEMA_PROBLEMS = dvc_yaml(REPO)


def test_stages_are_the_five_in_order_and_dvc_accepts_them() -> None:
    assert SCHEMA_PROBLEMS == []
    assert list(DATA["stages"]) == ["download", "preprocess", "train", "evaluate", "report"]
    for name, spec in DATA["stages"].items():
        assert f"python stages/{name}.py " in spec["cmd"], name


def test_deps_cover_every_imported_module_and_every_params_key() -> None:
    assert deps_problems(DATA, REPO) == []


def test_closure_follows_imports_transitively() -> None:
    script = REPO / "stages" / "download.py"
    closure = import_closure(script, [script.parent, REPO / "src"])
    package = REPO / "src" / "mnist_pipeline"
    # download.py imports sources, which imports io, which imports errors.
    assert closure[package / "data" / "sources.py"] == script
    assert package / "core" / "errors.py" in closure and package / "__init__.py" in closure
