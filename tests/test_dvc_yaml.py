"""dvc.yaml is complete: every module a stage imports is a dep, every params key exists.

A stage whose code can change without DVC noticing is a broken pipeline. The import
closure and the checks live in ``mnist_pipeline.tools.validate`` (``make validate`` runs them
too); these tests hold the real dvc.yaml to them.
"""

import json
import subprocess
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


# ------------------------------------------------------- what `dvc exp show` and plots get


def unique_deps() -> set[str]:
    return {dep for stage in DATA["stages"].values() for dep in stage.get("deps", [])}


def test_at_most_16_dependencies_in_all() -> None:
    """`dvc exp show` has one column per unique dep: scripts, package folders, data files."""
    deps = unique_deps()
    assert len(deps) <= 16, sorted(deps)
    assert "data/raw/manifest.json" not in deps  # it travels in data/processed
    assert not {"metrics/confusion_matrix.csv", "metrics/per_class.csv"} & deps  # derived


def test_only_eval_json_is_a_metrics_file() -> None:
    """One source of each number: no dvclive metrics beside eval.json."""
    stages = DATA["stages"].values()
    files = [path for stage in stages for entry in stage.get("metrics", []) for path in entry]
    assert files == ["metrics/eval.json"]


def top_level_plots() -> dict[str, dict]:
    return {name: props for entry in DATA["plots"] for name, props in entry.items()}


def test_learning_curves_are_two_charts_of_train_vs_validation() -> None:
    plots = top_level_plots()
    loss, accuracy = plots["Loss"], plots["Accuracy"]
    for chart, template, columns in (
        (loss, "loss_curves", ["train_loss", "val_loss"]),
        (accuracy, "accuracy_curves", ["train_accuracy", "val_accuracy", "test_accuracy"]),
    ):
        # y names the column every log has (DVC refuses a y a log lacks); the template
        # draws one line per column the log has, and a rule at the shipped epoch.
        assert chart["y"] == {"metrics/train_log.csv": "train_loss"}
        assert (chart["x"], chart["x_label"], chart["template"]) == ("epoch", "epoch", template)
        spec = json.loads((REPO / f".dvc/plots/{template}.json").read_text())
        assert spec["layer"][0]["transform"][0]["fold"] == columns
        assert "datum.shipped" in spec["layer"][1]["transform"][0]["filter"]
    assert (loss["y_label"], accuracy["y_label"]) == ("loss", "accuracy")
    outs = [path for entry in DATA["stages"]["train"]["outs"] for path in entry]
    assert outs == ["models/model.safetensors", "models/model.onnx", "metrics/train_log.csv"]
    # The resume state lives in DVC's git-ignored scratch folder: no out, no dep.
    assert "--checkpoint .dvc/tmp/train-checkpoint.pt" in DATA["stages"]["train"]["cmd"]


def test_per_class_scores_are_a_bar_chart_with_its_own_template() -> None:
    bars = top_level_plots()["Per-class scores (test set)"]
    assert bars["template"] == "per_class_bars" and bars["x"] == "class"
    assert bars["y"] == {"metrics/per_class.csv": ["precision", "recall", "f1"]}
    template = json.loads((REPO / ".dvc/plots/per_class_bars.json").read_text())
    assert template["spec"]["encoding"]["xOffset"]["field"] == "rev"  # revisions side by side
    assert template["spec"]["mark"] == "bar"


# Subprocess: git itself decides what it ignores.
def test_plot_pages_and_comparisons_are_git_ignored() -> None:
    for path in ("plots/index.html", "compare/compare.md", "dvc_plots/index.html"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert ignored.returncode == 0, path
