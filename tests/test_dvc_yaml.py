"""dvc.yaml is complete: every module a stage imports is a dep, and no other package folder.

A stage whose code can change without DVC noticing is a broken pipeline. The import
closure and the checks live in ``mnist_pipeline.tools.validate`` (``make validate`` runs them
too); these tests hold the real dvc.yaml to them.
"""

import json
import subprocess
from pathlib import Path

import yaml

from mnist_pipeline.tools.validate import deps_problems, imported_files

REPO = Path(__file__).resolve().parents[1]
DATA = yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_stages_are_the_five_in_order() -> None:
    assert list(DATA["stages"]) == ["download", "preprocess", "train", "evaluate", "report"]
    for name, spec in DATA["stages"].items():
        assert f"python stages/{name}.py " in spec["cmd"], name


def test_deps_cover_every_imported_module() -> None:
    assert deps_problems(REPO) == []


def test_closure_follows_imports_transitively() -> None:
    closure = imported_files(REPO / "stages" / "download.py", REPO)
    # download.py reaches data/splits.py only through data/sources.py.
    assert "stages/download.py" in closure and "src/mnist_pipeline/data/splits.py" in closure
    assert not any(path.startswith("src/mnist_pipeline/learning/") for path in closure)
    assert {"src/mnist_pipeline/core/errors.py", "src/mnist_pipeline/__init__.py"} <= set(closure)


def test_report_loads_no_model_and_serving_imports_no_reporting() -> None:
    """The report stage reads what evaluate wrote (no model file, no inference); serve
    and predict import nothing from reporting/."""
    package = REPO / "src" / "mnist_pipeline"
    report = imported_files(REPO / "stages" / "report.py", REPO)
    torch_side = {"learning/model_file.py", "learning/training.py", "evaluation/evaluate.py"}
    assert not {f"src/mnist_pipeline/{path}" for path in torch_side} & set(report)
    for entry in ("serving/serve.py", "tools/predict.py"):
        closure = imported_files(package / entry, REPO)
        assert not [path for path in closure if "/reporting/" in path], entry


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
        assert "datum.shipped" in json.dumps(spec["layer"][1])
        # One colour and legend entry per revision, from DVC's own anchor; the subtitle
        # names the splits the logs hold, read from the data.
        assert spec["encoding"]["color"] == "<DVC_METRIC_COLOR>"
        assert "data('log')" in spec["title"]["subtitle"]["expr"]
    assert (loss["y_label"], accuracy["y_label"]) == ("loss (train.loss)", "accuracy")
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
    assert template["spec"]["encoding"]["color"] == "<DVC_METRIC_COLOR>"  # as on the curves
    assert template["spec"]["mark"] == "bar"


# Subprocess: git itself decides what it ignores.
def test_plot_pages_are_git_ignored() -> None:
    for path in ("plots/index.html", "dvc_plots/index.html"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert ignored.returncode == 0, path
