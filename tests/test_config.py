"""params: the committed params.yaml is valid, and every kind of bad value is one clear line."""

import copy
import re
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.tools.params import SECTIONS, load_params, parse_params

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


def test_model_defaults_are_params_yaml(raw: dict[str, Any]) -> None:
    """Every key is spelled out in params.yaml, with the model's default as its value."""
    assert list(raw) == list(SECTIONS)
    for name, section in SECTIONS.items():
        assert list(raw[name]) == list(section.model_fields), name
    assert parse_params(raw) == parse_params({name: {} for name in SECTIONS})


def test_params_are_frozen() -> None:
    params = parse_params({"data": {}, "train": {}, "report": {}})
    with pytest.raises(pydantic.ValidationError, match="frozen"):
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
        ("train", "epochs", "10", "train.epochs: expected an integer, got '10'"),
        ("train", "lr", 10**300, "train.lr: 1e+300 is out of range (must be <= 1e+38)"),
        ("train", "seed", 2**64 - 1, "train.seed: a 20-digit integer is out of range"),
        ("data", "split_seed", 2**32, "data.split_seed: 4294967296 is out of range"),
        ("train", "hidden", [10**8], "train.hidden[0]: 100000000 is out of range"),
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


def test_load_params_prefixes_the_file(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_with(raw, "train", "lrr", 0.1)))
    with pytest.raises(PipelineError, match=rf"^{path}: train\.lrr: unknown key"):
        load_params(path)
    assert load_params(REPO / "params.yaml").train.model == "linear"


def test_model_size_and_cnn_geometry_are_checked_up_front(raw: dict[str, Any]) -> None:
    cnn = {"model": "cnn", "gradients": "autograd", "channels": [6, 16, 32, 64]}
    assert parse_params({**raw, "train": {**raw["train"], **cnn}}).train.channels == (6, 16, 32, 64)
    cnn["channels"] = [6, 16, 32, 64, 128]
    with pytest.raises(PipelineError, match=r"halves the 28×28 image .*use at most 4 entries"):
        parse_params({**raw, "train": {**raw["train"], **cnn}})
    mlp = {"model": "mlp", "hidden": [8192, 8192]}
    with pytest.raises(PipelineError, match=r"train\.hidden: .*mlp of 73,547,776 weights, over"):
        parse_params({**raw, "train": {**raw["train"], **mlp}})


def test_every_choice_is_documented_in_params_yaml() -> None:
    """params.yaml's comments list the choices: each one of the model's, no stale list."""
    section, checked = "", []
    for line in (REPO / "params.yaml").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            section = line.rstrip(":")
            continue
        key, _, comment = line.strip().partition("#")
        field = SECTIONS.get(section, DataParams).model_fields.get(key.split(":")[0])
        if field is None or typing.get_origin(field.annotation) is not typing.Literal:
            continue
        for choice in typing.get_args(field.annotation):
            assert re.search(rf"(?<![\w-]){re.escape(choice)}(?![\w-])", comment), (key, choice)
        checked.append(f"{section}.{key.split(':')[0]}")
    literal = [
        f"{name}.{key}"
        for name, model in SECTIONS.items()
        for key, field in model.model_fields.items()
        if typing.get_origin(field.annotation) is typing.Literal
    ]
    assert checked == literal


def test_registries_match_the_params_choices() -> None:
    """Each choice of data.dataset and data.source has its registry entry, and no more."""
    from mnist_pipeline.data.sources import DATASETS, SOURCES

    Dataset, Source = (DataParams.model_fields[k].annotation for k in ("dataset", "source"))

    assert tuple(DATASETS) == typing.get_args(Dataset)
    assert ("auto", *SOURCES) == typing.get_args(Source)


def test_every_stage_knows_the_section_names() -> None:
    """The names a stage checks an unknown section against are the whole schema's."""
    from mnist_pipeline.core import params

    assert tuple(SECTIONS) == params.SECTIONS
