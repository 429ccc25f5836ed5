"""Experiments as the README shows them: `dvc exp run -S`, a queued grid, show/diff/apply.

Queued runs execute in a temp copy holding only git- and DVC-tracked files, so these
tests also prove nothing the pipeline needs is untracked. A typo'd key fails fast with
the suggestion and leaves every output as it was. `dvc exp show` stays a table a person
reads: at most 6 metrics (numbers), 16 deps and 58 data columns (3 headline metrics, 39
params, 16 deps; `--only-changed` shows only what differs); after the 2×2 grid,
`--only-changed` leaves at most 12.
"""

import csv
import hashlib
import io
import json
import time
from pathlib import Path

import pytest
import yaml

from conftest import run, set_params

pytestmark = pytest.mark.slow

OUTPUTS = [
    "models/model.safetensors",
    "metrics/train_log.csv",
    "metrics/eval.json",
    "metrics/confusion_matrix.csv",
    "metrics/per_class.csv",
]
# `dvc exp show --csv` columns that name the row, not data: the rest are metrics, params, deps.
ROW_COLUMNS = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}


def digests(project: Path) -> dict[str, str]:
    return {p: hashlib.sha256((project / p).read_bytes()).hexdigest() for p in OUTPUTS}


@pytest.fixture
def baseline(reproduced_copy: Path) -> Path:
    """The project on the embedded sample, 2 epochs, reproduced and committed: this test's
    own copy of the session's reproduced pipeline."""
    return reproduced_copy


def exp_rows(project: Path) -> list[dict]:
    """Experiments of the baseline commit from `dvc exp show --json`."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    (baseline,) = [entry for entry in shown if entry.get("rev") != "workspace"]
    return [run_["revs"][0] for run_ in baseline.get("experiments") or []]


def metric(row: dict, key: str) -> float:
    return row["data"]["metrics"]["metrics/eval.json"]["data"][key]


def data_columns(project: Path, *options: str) -> list[str]:
    """The data columns of `dvc exp show` (as its --csv header names them)."""
    table = run(["dvc", "exp", "show", "--csv", *options], project).stdout
    header = next(csv.reader(io.StringIO(table)))
    return [name for name in header if name not in ROW_COLUMNS]


def leaves(tree: dict) -> list[object]:
    return [x for v in tree.values() for x in (leaves(v) if isinstance(v, dict) else [v])]


# Subprocess: what `dvc exp show` itself prints.
def test_exp_show_is_a_table_a_person_reads(reproduced: Path) -> None:
    baseline = reproduced  # read only: the session's copy
    shown = json.loads(run(["dvc", "exp", "show", "--json"], baseline).stdout)
    data = next(entry for entry in shown if entry.get("rev") != "workspace")["data"]
    metrics = [v for file in data["metrics"].values() for v in leaves(file["data"])]
    params = [v for file in data["params"].values() for v in leaves(file["data"])]
    assert list(data["metrics"]) == ["metrics/eval.json"]  # one source: no dvclive copy
    # The notebook's accuracy, cross-entropy and macro F1; calibration, robustness, the share
    # answered and its accuracy: a handful, each a float.
    assert len(metrics) <= 7 and all(type(v) is float for v in metrics), data["metrics"]
    assert len(data["deps"]) <= 16, sorted(data["deps"])
    assert len(metrics) + len(params) + len(data["deps"]) <= 64  # augment: 5 of the params
    assert len(data_columns(baseline)) <= 64


# Subprocess: `dvc exp run/show/diff/apply` themselves.
def test_exp_run_show_diff_apply(baseline: Path) -> None:
    run(["dvc", "exp", "run", "-n", "lr-high", "-S", "train.lr=0.1"], baseline)
    (row,) = exp_rows(baseline)
    assert row["name"] == "lr-high"
    assert row["data"]["params"]["params.yaml"]["data"]["train"]["lr"] == 0.1
    table = run(["dvc", "exp", "show", "--md"], baseline).stdout
    assert "lr-high" in table and "accuracy" in table
    diff = json.loads(run(["dvc", "exp", "diff", "HEAD", "lr-high", "--json"], baseline).stdout)
    assert diff["params"]["params.yaml"]["train.lr"]["new"] == 0.1
    assert "accuracy" in diff["metrics"]["metrics/eval.json"]
    run(["git", "checkout", "-q", "--", "."], baseline)
    run(["dvc", "checkout", "-q"], baseline)
    run(["dvc", "exp", "apply", "lr-high"], baseline)
    assert yaml.safe_load((baseline / "params.yaml").read_text())["train"]["lr"] == 0.1
    applied = json.loads((baseline / "metrics/eval.json").read_text())["accuracy"]
    assert applied == metric(row, "accuracy")


# Subprocess: `dvc queue` and the workers it detaches.
def test_queued_grid_runs_in_parallel(baseline: Path) -> None:
    run(
        ["dvc", "exp", "run", "--queue", "-S", "train.lr=0.01,0.1", "-S", "train.model=linear,mlp"],
        baseline,
    )
    run(["dvc", "queue", "start", "-j", "2"], baseline)
    # `dvc queue start` detaches its workers; wait for the queue to drain.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], baseline).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    status = run(["dvc", "queue", "status"], baseline).stdout
    assert status.count("Success") == 4, status
    rows = exp_rows(baseline)
    assert len(rows) == 4
    grid = {
        (r["data"]["params"]["params.yaml"]["data"]["train"]["lr"],
         r["data"]["params"]["params.yaml"]["data"]["train"]["model"])
        for r in rows
    }  # fmt: skip
    assert grid == {(0.01, "linear"), (0.1, "linear"), (0.01, "mlp"), (0.1, "mlp")}
    accuracies = [metric(r, "accuracy") for r in rows]
    assert len(set(accuracies)) == 4, accuracies
    # What changed across the grid fits a terminal: the two params, the seven metrics, and
    # the deps that the runs rewrote (model, eval.json, train log, predictions).
    changed = data_columns(baseline, "--only-changed")
    assert "train.lr" in changed and "train.model" in changed and "accuracy" in changed
    assert len(changed) <= 13, changed


# Subprocess: `dvc exp run -S` and the stage it stops.
def test_typo_fails_fast_and_changes_no_output(baseline: Path) -> None:
    before = digests(baseline)
    result = run(["dvc", "exp", "run", "-S", "+train.lrr=0.1"], baseline, check=False)
    assert result.returncode != 0
    assert "train.lrr: unknown key; did you mean 'train.lr'?" in result.stdout + result.stderr
    assert digests(baseline) == before


# Subprocess: `dvc status` decides what reruns.
def test_a_code_edit_reruns_exactly_the_stages_that_run_it(baseline: Path) -> None:
    """Each stage depends on the folders it imports and no others: an edit in learning/
    leaves download and preprocess up to date; an edit in data/ touches every stage."""
    every = {"download", "preprocess", "train", "evaluate", "report"}
    for folder, expected in (("learning", every - {"download", "preprocess"}), ("data", every)):
        module = baseline / "src" / "mnist_pipeline" / folder / "__init__.py"
        original = module.read_text()
        module.write_text(original + "# an edit\n")
        status = json.loads(run(["dvc", "status", "--json"], baseline).stdout)
        module.write_text(original)
        assert set(status) == expected, folder


# Subprocess: `dvc exp save` per preset, a `dvc exp run`, `dvc exp show` reads their refs.
def test_only_changed_shows_the_metrics_and_every_param_that_differs(baseline: Path) -> None:
    """With the three presets' params and a `-S train.lr` experiment, the README's `dvc exp
    show --only-changed --drop 'Created|.*/.*'` shows the headline metrics and every param
    that differs, and no dependency hash. Each preset's params are saved as an experiment
    (`dvc exp save`) without training it (test_presets.py runs a preset)."""
    ran = ("linear", "mlp", "cnn")
    presets = yaml.safe_load((baseline / "presets.yaml").read_text())
    for preset in ran:  # each over the committed params, as `make preset` sets them
        set_params(baseline, train=presets[preset])
        run(["dvc", "exp", "save", "-n", preset], baseline)
        run(["git", "checkout", "--", "params.yaml"], baseline)
    run(["dvc", "exp", "run", "-S", "train.lr=0.2"], baseline)
    names = set(data_columns(baseline, "--only-changed", "--drop", "Created|.*/.*"))
    assert {"accuracy", "cross_entropy", "macro_f1"} <= names, names
    assert not [name for name in names if "/" in name], names  # no dependency hashes
    changed = {"train.lr"}
    for key, value in (item for name in ran for item in presets[name].items()):
        subs = [f".{sub}" for sub in value] if isinstance(value, dict) else [""]  # augment
        changed |= {f"train.{key}{sub}" for sub in subs}
    assert changed - {"train.epochs"} <= names, names
    assert len(exp_rows(baseline)) == 4  # the four experiments of the commit
