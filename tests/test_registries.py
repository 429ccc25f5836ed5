"""The registries decide: a model or a data source registered in one place is a valid
``params.yaml`` choice, and the stages run it; a headline metric registered in one place is
in eval.json and the report; no other file is touched.

Each throw-away entry lives in this test alone. A model or a source is registered by a
wrapper that then runs the real stage script (``conftest.stage(via=...)``), as a
contributor's new file would: the params schema takes the registries' keys at import. A
metric is read when the stages run, so its test registers it in this process.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, stage, stage_here, write_manifest
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import read_csv, read_json
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import DATASETS, SOURCES
from mnist_pipeline.data.splits import Split, save_split
from mnist_pipeline.data.tensors import read_tensor_metadata
from mnist_pipeline.evaluation.scores import HEADLINE, Headline, Outcome
from mnist_pipeline.learning.models import MODELS
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.tools.params import parse_params

# A two-layer relu net under a name no registry knows; the hand-derived engine trains it
# (a chain of linear layers and activations), so the default gradients: manual applies.
TINY_MODEL = """
import runpy, sys
from mnist_pipeline.learning.models import MODELS, ModelEntry

def build_tiny(in_features, num_classes, hidden):
    from torch import nn
    width = hidden[0]
    return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, num_classes))

def tiny_weights(side, settings):
    return (side * side + 1) * settings["hidden"][0]

MODELS["tiny"] = ModelEntry(build_tiny, ("hidden",), tiny_weights, manual=True)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# A source that makes a small synthetic dataset (the tests' own bands) instead of fetching one.
TINY_SOURCE = """
import hashlib, runpy, sys
sys.path.insert(0, {tests!r})
from conftest import synthetic_arrays
from mnist_pipeline.data.idx import write_idx
from mnist_pipeline.data.sources import ALL_FILES, SOURCES

def from_bands(params, out_dir):
    (train_x, train_y), (test_x, test_y) = synthetic_arrays(60, 1), synthetic_arrays(20, 2)
    entries = {{}}
    for name, array in zip(ALL_FILES, (train_x, train_y, test_x, test_y), strict=True):
        write_idx(array, out_dir / name)
        digest = hashlib.sha256((out_dir / name).read_bytes()).hexdigest()
        entries[name] = {{"sha256": digest, "verified": "generated", "shape": list(array.shape)}}
    return "synthetic bands", entries

SOURCES["bands"] = from_bands
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def params_file(path: Path, **sections: dict[str, object]) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, values in sections.items():
        raw[name].update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_unknown_names_are_refused_until_registered() -> None:
    """The choices are the registries' keys, in their order, and nothing else."""
    assert [*TrainParams.model_fields["model"].annotation.__args__] == list(MODELS)
    assert [*DataParams.model_fields["dataset"].annotation.__args__] == list(DATASETS)
    assert [*DataParams.model_fields["source"].annotation.__args__] == ["auto", *SOURCES]
    with pytest.raises(PipelineError, match=r"train\.model: 'tiny' is not allowed"):
        parse_params({"data": {}, "train": {"model": "tiny"}, "report": {}})


def processed(tmp_path: Path, train_split: Split, test_split: Split) -> Path:
    """A preprocess output folder holding the two splits."""
    data = tmp_path / "processed"
    save_split(train_split, data / "train.safetensors")
    save_split(test_split, data / "test.safetensors")
    return data


# Subprocess: the params schema takes MODELS' keys at import, so the entry comes first.
def test_a_model_registered_in_one_place_trains_through_the_stage(
    tmp_path: Path, train_split: Split, test_split: Split
) -> None:
    data = processed(tmp_path, train_split, test_split)
    wrapper = tmp_path / "tiny_model.py"
    wrapper.write_text(TINY_MODEL)
    train = {"model": "tiny", "hidden": [32], "epochs": 3, "lr": 0.5, "loss": "cross_entropy"}
    params = params_file(tmp_path / "params.yaml", train=train)
    model, log = tmp_path / "model.safetensors", tmp_path / "log.csv"
    args = ["--params", str(params), "--data", str(data), "--model", str(model)]
    result = stage("train", *args, "--history", str(log), cwd=tmp_path, via=wrapper)
    assert result.returncode == 0, result.stderr
    assert '"name": "tiny"' in read_tensor_metadata(model)["spec"]
    history = read_csv(log)
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["test_accuracy"].iloc[-1] >= 0.9  # the synthetic bands are easy

    # Without the wrapper the name is unknown: the registry is the only place it exists.
    plain = stage("train", *args, "--history", str(log), cwd=tmp_path)
    assert plain.returncode == 2 and "train.model: 'tiny' is not allowed" in plain.stderr


def test_the_params_check_applies_the_entry_s_size_rule_and_engine_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Change an entry, and the params check changes with it: nothing else holds a copy."""
    mlp = {"model": "mlp", "hidden": [64]}
    assert TrainParams.model_validate(mlp).hidden == (64,)
    monkeypatch.setitem(MODELS, "mlp", dataclasses.replace(MODELS["mlp"], manual=False))
    with pytest.raises(PipelineError, match="model 'mlp' is autograd only"):
        TrainParams.model_validate(mlp)
    huge = dataclasses.replace(MODELS["mlp"], weights=lambda side, settings: 10**9)
    monkeypatch.setitem(MODELS, "mlp", huge)
    with pytest.raises(PipelineError, match=r"train\.hidden: \[64\] makes a mlp of 1,0"):
        TrainParams.model_validate({**mlp, "gradients": "autograd"})


# Subprocess: the params schema takes SOURCES' keys at import, so the entry comes first.
def test_a_source_registered_in_one_place_feeds_the_download_stage(tmp_path: Path) -> None:
    wrapper = tmp_path / "bands_source.py"
    wrapper.write_text(TINY_SOURCE.format(tests=str(REPO / "tests")))
    params = params_file(tmp_path / "params.yaml", data={"source": "bands"})
    result = stage("download", "--params", str(params), "--out", "raw", cwd=tmp_path, via=wrapper)
    assert result.returncode == 0, result.stderr
    manifest = read_json(tmp_path / "raw" / "manifest.json")
    assert (manifest["source"], manifest["origin"]) == ("bands", "synthetic bands")
    assert manifest["counts"] == {"train": 60, "test": 20}


# A headline metric under a name no registry knows: top-2 accuracy, from the probabilities.
def top2(outcome: Outcome) -> float:
    best_two = np.argsort(-outcome.probabilities, axis=1)[:, :2]
    return float((best_two == outcome.actual[:, None]).any(axis=1).mean())


def test_a_metric_registered_in_one_place_reaches_eval_json_and_the_report(
    tmp_path: Path,
    train_split: Split,
    test_split: Split,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In this process: the stages read ``HEADLINE`` when they run, not at import."""
    data = processed(tmp_path, train_split, test_split)
    write_manifest(data, len(train_split), len(test_split))
    params = params_file(tmp_path / "params.yaml", train={"epochs": 1, "lr": 0.5})
    common = ["--params", str(params), "--data", str(data), "--model", "model.safetensors"]
    trained = stage_here(capsys, "train", *common, "--history", "log.csv", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    evaluate = [*common, "--metrics", "eval.json", "--per-class", "per_class.csv"]
    evaluate += ["--confusion", "confusion.csv", "--counts", "counts.csv"]
    evaluate += ["--predictions", "predictions.csv"]
    plain = list(HEADLINE)
    with monkeypatch.context() as patch:
        patch.setitem(HEADLINE, "top2_accuracy", Headline("top-2 accuracy", top2))
        result = stage_here(capsys, "evaluate", *evaluate, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        metrics = read_json(tmp_path / "eval.json")
        assert list(metrics) == [*plain, "top2_accuracy"]
        assert metrics["accuracy"] <= metrics["top2_accuracy"] <= 1
        report = ["--params", str(params), "--data", str(data), "--metrics", "eval.json"]
        report += ["--log", "log.csv", "--predictions", "predictions.csv", "--out", "reports"]
        result = stage_here(capsys, "report", *report, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    text = (tmp_path / "reports" / "report.md").read_text()
    assert f"- top-2 accuracy: {metrics['top2_accuracy']:.4f}\n" in text  # headline metrics
    assert f"top-2 accuracy {metrics['top2_accuracy']:.4f}." in text  # the model card

    # Without the entry the metric is unknown: the registry is the only place it exists.
    assert stage_here(capsys, "evaluate", *evaluate, cwd=tmp_path).returncode == 0
    assert list(read_json(tmp_path / "eval.json")) == plain
