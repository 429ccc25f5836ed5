"""params: the committed params.yaml is valid, and every kind of bad value is one clear line."""

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.params import (
    SECTIONS,
    DataParams,
    load_params,
    main,
    parse_params,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_committed_params_are_the_notebook_defaults() -> None:
    """The notebook's run: linear, mse, lr 0.01, batch 16, 10 epochs, plain SGD, test set
    scored each epoch; gradients by the hand-derived engine (the same math, checked
    against autograd in test_backprop/test_engine)."""
    train = load_params(REPO / "params.yaml").train
    assert (train.model, train.output, train.loss) == ("linear", "softmax", "mse")
    assert (train.lr, train.batch_size, train.epochs) == (0.01, 16, 10)
    assert (train.optimizer, train.momentum, train.weight_decay) == ("sgd", 0.0, 0.0)
    assert train.val_fraction == 0.0 and train.gradients == "manual"
    assert load_params(REPO / "params.yaml").data == DataParams()


def test_every_dataclass_field_is_spelled_out_in_params_yaml(raw: dict[str, Any]) -> None:
    assert set(raw) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        assert set(raw[name]) == {f.name for f in dataclasses.fields(cls)}, name


def test_params_are_frozen() -> None:
    params = parse_params({"data": {}, "train": {}, "report": {}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.lr = 1.0  # type: ignore[misc]


def _with(raw: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    out[section][key] = value
    return out


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "lrr", 0.1, "train.lrr: unknown key; did you mean 'train.lr'?"),
        ("train", "epoch", 3, "did you mean 'train.epochs'?"),
        ("train", "lr", -0.1, "train.lr: -0.1 is out of range (must be > 0.0)"),
        ("train", "lr", 0, "train.lr: 0.0 is out of range (must be > 0.0)"),
        ("train", "lr", "fast", "train.lr: expected a number, got 'fast'"),
        ("train", "lr", float("nan"), "train.lr: expected a finite number"),
        ("train", "epochs", 2.5, "train.epochs: expected an integer, got 2.5"),
        ("train", "epochs", True, "train.epochs: expected an integer, got True"),
        ("train", "batch_size", 0, "train.batch_size: 0 is out of range (must be >= 1)"),
        ("train", "model", "linaer", "did you mean 'linear'?"),
        ("train", "model", "resnet", "train.model: 'resnet' is not allowed (choose one of"),
        ("train", "hidden", [], "train.hidden: expected a non-empty list"),
        ("train", "hidden", [64, 0], "train.hidden[1]: 0 is out of range"),
        ("train", "threads", 1000, "train.threads: 1000 is out of range (must be <= 256)"),
        ("data", "source", "internet", "data.source: 'internet' is not allowed"),
        ("data", "dataset", "fashion_mnist", "did you mean 'fashion-mnist'?"),
        ("data", "mirror", 3, "data.mirror: expected a string, got 3"),
    ],
)
def test_bad_values_name_key_value_and_fix(
    raw: dict[str, Any], section: str, key: str, value: Any, expected: str
) -> None:
    with pytest.raises(PipelineError) as info:
        parse_params(_with(raw, section, key, value))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_unknown_sections(raw: dict[str, Any]) -> None:
    broken = {k: v for k, v in raw.items() if k != "train"}
    with pytest.raises(PipelineError, match="train: missing section"):
        parse_params(broken)
    with pytest.raises(PipelineError, match="trian: unknown section; did you mean 'train'"):
        parse_params({**raw, "trian": {}})
    with pytest.raises(PipelineError, match="train: expected a mapping"):
        parse_params({**raw, "train": [1, 2]})


def test_load_params_prefixes_the_file_and_cli_exits_2(
    tmp_path: Path, raw: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_with(raw, "train", "lrr", 0.1)))
    with pytest.raises(PipelineError, match=rf"^{path}: train\.lrr: unknown key"):
        load_params(path)
    assert main([str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main([str(REPO / "params.yaml")]) == 0
