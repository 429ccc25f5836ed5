"""`mnist-predict`: your own image -> MNIST-style input -> the ONNX model's top classes.

The main check: the 1,000 embedded test images, written out as a user would photograph or
draw them (black ink on white paper, off-centre on a bigger sheet, enlarged 4×), get the
same class from predict (onnxruntime) as from the evaluate stage (torch) for at least 95% of
them. The model is the pipeline's default (linear, the notebook's settings) trained on the
embedded sample and exported as the train stage exports it. A bad image gets its own
``error:`` line while the others are answered (exit status 2); a bad model stops the run
with one line and nothing answered. No torch is imported.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, error_line, git_env
from mnist_pipeline.data.params import DataParams
from mnist_pipeline.data.sources import IDX_FILES, fetch
from mnist_pipeline.data.splits import Split, read_raw_split
from mnist_pipeline.evaluation.evaluate import evaluate
from mnist_pipeline.learning.losses import UNSURE_BELOW, Head
from mnist_pipeline.learning.model_file import to_onnx
from mnist_pipeline.learning.models import ModelSpec, build_model
from mnist_pipeline.learning.params import TrainParams
from mnist_pipeline.learning.training import train
from mnist_pipeline.serving.images import read_image, to_mnist
from mnist_pipeline.tools.predict import main

ENLARGE = 4
PAD = ((6, 10), (12, 4))  # (top, bottom), (left, right): off-centre on the sheet


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Split, list[str]]:
    """(ONNX model file, test split, evaluate's predicted class per test image)."""
    root = tmp_path_factory.mktemp("predict")
    manifest = fetch(DataParams(source="embedded"), root / "raw")
    train_split, test_split = (
        read_raw_split(root / "raw", *IDX_FILES[split], manifest) for split in ("train", "test")
    )
    params = TrainParams()  # the notebook's: linear, softmax, mse, lr 0.01, 10 epochs
    result = train(params, train_split, test_split)
    model = root / "model.onnx"
    model.write_bytes(
        to_onnx(result.model, result.spec, Head(params.output), train_split.classes, "mnist")
    )
    scored = evaluate(result.model, result.spec, test_split, Head(params.output))
    return model, test_split, list(scored.predictions["predicted"])


def as_photo(image: np.ndarray) -> Image.Image:
    """A test image ``[784]`` in [0, 1] as a user's image: black on white, padded, 4× size."""
    ink = np.round(image.reshape(28, 28) * 255).astype(np.uint8)
    sheet = np.pad(255 - ink, PAD, constant_values=255)  # [44, 44], white paper
    height, width = sheet.shape
    return Image.fromarray(sheet).resize((width * ENLARGE, height * ENLARGE), Image.NEAREST)


def strict_json(text: str) -> list[dict]:
    """``text`` parsed as standard JSON: NaN and Infinity (Python's extension) are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def predict_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main([*args, "--json"]) == 0
    return strict_json(capsys.readouterr().out)


def test_predict_agrees_with_evaluate(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, split, evaluated = trained
    images = []
    for index, image in enumerate(split.images):
        path = tmp_path / f"{index:04d}.png"
        as_photo(image).save(path)
        images.append(str(path))

    answers = predict_json(capsys, *images, "--model", str(model))
    predicted = [answer["top"][0]["class"] for answer in answers]  # its best guess, sure or not
    agreement = np.mean([p == e for p, e in zip(predicted, evaluated, strict=True)])
    assert agreement >= 0.95, agreement
    # Below train.unsure_below's default (the model file holds none) predicted is null.
    unsure = [answer["predicted"] is None for answer in answers]
    assert unsure == [answer["top"][0]["probability"] < UNSURE_BELOW for answer in answers]
    assert all(answer["predicted"] in (None, answer["top"][0]["class"]) for answer in answers)
    assert 0.05 < np.mean(unsure) < 0.5  # the notebook's model is unsure of some digits
    assert [answer["image"] for answer in answers] == images
    probabilities = answers[0]["probabilities"]
    assert list(probabilities) == list(split.classes)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)  # softmax output
    assert max(probabilities, key=probabilities.get) == predicted[0]
    assert answers[0]["top"][0]["class"] == predicted[0] and len(answers[0]["top"]) == 3


def test_top3_text_and_the_input_the_model_sees(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, split, evaluated = trained
    as_photo(split.images[0]).save(tmp_path / "mine.png")
    assert main([str(tmp_path / "mine.png"), "--model", str(model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'mine.png'}: {evaluated[0]}"
    assert len(lines) == 4 and lines[1].split()[0] == evaluated[0]
    assert all(line.rstrip().endswith("%") for line in lines[1:])

    seen = to_mnist(read_image(tmp_path / "mine.png"))  # [28, 28]: the test image itself, again
    assert seen.shape == (28, 28)
    assert np.abs(seen - split.images[0].reshape(28, 28)).mean() < 0.01


def test_mnist_style_input() -> None:
    """Dark-on-light or light-on-dark, any size: ink fits 20×20, mass centred, peak 1."""
    bar = np.full((300, 500), 250.0)  # light paper, a dark wide bar off to one side
    bar[40:100, 20:420] = 10.0
    for gray in (bar, 255 - bar):
        field = to_mnist(gray)
        assert field.shape == (28, 28) and field.max() == 1.0 and field.min() == 0.0
        rows, cols = np.nonzero(field > 0.5)
        assert cols.max() - cols.min() + 1 == 20  # the long side fills the box ...
        assert rows.max() - rows.min() + 1 == 3  # ... and the aspect ratio is kept
        mass = (field.sum(1) * np.arange(28)).sum() / field.sum()
        assert abs(mass - 14) <= 0.5


def test_transparency_is_paper_and_exif_rotation_is_applied(tmp_path: Path) -> None:
    """A black stroke on a transparent PNG reads as on white; a phone's EXIF turn is undone."""
    stroke = np.zeros((40, 60, 4), dtype=np.uint8)  # RGBA, fully transparent
    stroke[10:30, 20:25] = (0, 0, 0, 255)  # an opaque black vertical bar
    Image.fromarray(stroke).save(tmp_path / "clear.png")
    gray = read_image(tmp_path / "clear.png")
    assert gray[0, 0] == 255 and gray[15, 22] == 0

    sideways = Image.fromarray(255 - stroke[..., 3])  # [40, 60]: a dark bar on white
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; viewers rotate 90° clockwise
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (60, 40)  # rotated: the bar now lies horizontally
    assert upright[22, 40 - 1 - 15] < 64


def test_a_large_photo_is_decoded_small_and_answered_alike(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 12-megapixel JPEG is decoded at 1/4 scale (``Image.draft``), a 3.8-megapixel PNG
    box-reduced before it becomes floats; both get the class of the small image."""
    small = as_photo(trained[1].images[0])  # 176×176
    small.resize((4000, 3000)).convert("RGB").save(tmp_path / "photo.jpg", quality=90)
    small.resize((1950, 1950)).save(tmp_path / "scan.png")
    assert read_image(tmp_path / "photo.jpg").shape == (750, 1000)
    assert read_image(tmp_path / "scan.png").shape == (650, 650)
    answers = predict_json(capsys, *(str(tmp_path / n) for n in ("photo.jpg", "scan.png")),
                           "--model", str(trained[0]))  # fmt: skip
    assert [a["predicted"] for a in answers] == [trained[2][0]] * 2


def png_claiming(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims ``width``×``height`` (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))  # one row of a huge image
        + chunk(b"IEND", b"")
    )


def truncated_png() -> bytes:
    """The first half of a 64×64 noise PNG: a download cut short."""
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def handmade_model(
    path: Path, double_rows: bool = False, bias: float = 0.0, unsure_below: str | None = None
) -> None:
    """A hostile model written with ``onnx.helper``, with the inputs, outputs and metadata of
    an exported one: ``double_rows`` answers two rows per image; ``bias`` NaN makes every
    score NaN. Its weights are 0: every class gets 0.1, below any ``unsure_below`` > 0.1."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.zeros((784, 10), np.float32), "weights")
    offsets = numpy_helper.from_array(np.full(10, bias, np.float32), "bias")
    nodes = [
        helper.make_node("MatMul", ["images", "weights"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["scores"]),
        helper.make_node(
            "Concat", ["scores", "scores"] if double_rows else ["scores"], ["rows"], axis=0
        ),
        helper.make_node("Identity", ["rows"], ["logits"]),
        helper.make_node("Softmax", ["rows"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 784])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["M", 10])
            for name in ("logits", "probabilities")
        ],
        [weights, offsets],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    meta = {"classes": json.dumps(DIGITS), "dataset": "mnist", "model": "linear"}
    for key, value in {**meta, **({"unsure_below": unsure_below} if unsure_below else {})}.items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())


def other_model(path: Path, in_features: int, classes: list[str]) -> None:
    spec = ModelSpec("linear", in_features, 10)
    path.write_bytes(to_onnx(build_model(spec), spec, Head(), tuple(classes), "mnist"))


DIGITS = [str(d) for d in range(10)]
BAD = {
    "text": (lambda p: p.write_text("not an image\n"), "not a PNG or JPEG image"),
    "empty": (lambda p: p.write_bytes(b""), "not a PNG or JPEG image"),
    "blank": (lambda p: Image.new("L", (64, 64), 240).save(p, format="PNG"), "blank image"),
    "truncated": (lambda p: p.write_bytes(truncated_png()), "cannot decode the image"),
    "fifo": (os.mkfifo, "bad.png: not a regular file"),  # refused, not waited on
    "folder": (Path.mkdir, "bad.png: cannot read (Is a directory)"),
    "20000x20000": (
        lambda p: p.write_bytes(png_claiming(20000, 20000)),
        "image larger than the 4,000,000 pixels",
    ),
    "model-for-32x32x3": (
        lambda p: other_model(p.with_suffix(".model"), 3072, DIGITS),
        "takes 3072 input features, not 28×28 = 784",
    ),
    "model-with-2-names": (
        lambda p: other_model(p.with_suffix(".model"), 784, ["cat", "dog"]),
        "answers scores of shape (2, 10) for 2 images and 2 class names",
    ),
    "model-answering-2-rows-per-image": (
        lambda p: handmade_model(p.with_suffix(".model"), double_rows=True),
        "answers scores of shape (4, 10) for 2 images and 10 class names; rerun the train",
    ),
    "model-with-a-nan-bias": (
        lambda p: handmade_model(p.with_suffix(".model"), bias=np.nan),
        "the model's scores are not finite numbers (NaN or infinity); rerun the train stage",
    ),
    "model-with-unsure-below-1": (
        lambda p: handmade_model(p.with_suffix(".model"), unsure_below="1.0"),
        "in its metadata (unsure_below 1.0 is not in [0, 1))",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line(
    case: str,
    trained: tuple[Path, Split, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad image: its own error line, the good image still answered, exit 2. A bad
    model: one error line, nothing answered."""
    make, message = BAD[case]
    good = tmp_path / "good.png"
    as_photo(trained[1].images[0]).save(good)
    bad = tmp_path / "bad.png"
    make(bad)
    bad_model = case.startswith("model")
    model = bad.with_suffix(".model") if bad_model else trained[0]
    images = [str(good)] if bad_model else [str(bad), str(good)]

    status = main([*images, "--model", str(model)])
    out, err = capsys.readouterr()
    assert status == 2, (status, out)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    if bad_model:
        assert out == ""  # nothing answered, not even the good image
    else:
        assert out.splitlines()[0] == f"{good}: {trained[2][0]}"


def test_below_its_threshold_the_model_is_unsure_and_gives_its_guesses(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model that gives every class 0.1: unsure at threshold 0.5, a class at threshold 0."""
    as_photo(trained[1].images[0]).save(image := tmp_path / "a.png")
    handmade_model(unsure := tmp_path / "unsure.onnx", unsure_below="0.5")
    [answer] = predict_json(capsys, str(image), "--model", str(unsure))
    assert answer["predicted"] is None and len(answer["top"]) == 3
    assert answer["top"][0] == {"class": "0", "probability": 0.1}
    assert main([str(image), "--model", str(unsure)]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [f"{image}: unsure", "  0   10.0%"]
    handmade_model(always := tmp_path / "always.onnx", unsure_below="0")
    assert predict_json(capsys, str(image), "--model", str(always))[0]["predicted"] == "0"


def test_json_of_a_model_with_nan_scores_is_nothing_but_one_error_line(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    as_photo(trained[1].images[0]).save(tmp_path / "a.png")
    handmade_model(tmp_path / "nan.onnx", bias=np.nan)
    assert main([str(tmp_path / "a.png"), "--model", str(tmp_path / "nan.onnx"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "not finite numbers" in err


def test_batch_json_has_an_error_entry_per_bad_file(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = []
    for index, image in enumerate(trained[1].images[:3]):
        paths.append(tmp_path / f"{index}.png")
        as_photo(image).save(paths[-1])
    (tmp_path / "1.png").write_text("not an image")
    assert main([*map(str, paths), "--model", str(trained[0]), "--json"]) == 2
    out, err = capsys.readouterr()
    answers = strict_json(out)
    assert [a["image"] for a in answers] == list(map(str, paths))
    assert answers[1] == {"image": str(paths[1]), "error": err.strip().removeprefix("error: ")}
    assert [a["predicted"] for a in (answers[0], answers[2])] == [trained[2][0], trained[2][2]]


def test_16_bit_grayscale_png_keeps_its_digit(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20 item 12: 16-bit samples are scaled to 8 bits, not clipped to white."""
    photo = np.asarray(as_photo(trained[1].images[0]), dtype=np.uint16) * 257  # 0..65535
    Image.fromarray(photo).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    assert (
        predict_json(capsys, str(tmp_path / "deep.png"), "--model", str(trained[0]))[0]["predicted"]
        == trained[2][0]
    )


def broken_jpegs(image: Image.Image) -> dict[str, bytes]:
    """``image`` as a JPEG cut short, and as one whose scan header is damaged."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    sos = data.index(b"\xff\xda")
    damaged = data[: sos + 4] + b"\x09" + data[sos + 5 :]  # 9 components in a 3-component image
    return {"truncated.jpg": data[: len(data) * 9 // 10], "damaged.jpg": damaged}


def test_a_truncated_or_damaged_jpeg_is_refused(
    trained: tuple[Path, Split, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, data in broken_jpegs(as_photo(trained[1].images[0])).items():
        (tmp_path / name).write_bytes(data)
        assert main([str(tmp_path / name), "--model", str(trained[0])]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith(f"error: {tmp_path / name}: cannot decode the image")
        assert err.count("\n") == 1


def test_names_reach_the_terminal_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20 item 14: escapes and newlines in file and class names are shown, not run."""
    spec = ModelSpec("linear", 784, 10)
    classes = ("\x1b]0;owned\x07", "a\nerror: forged", *DIGITS[2:])
    model = tmp_path / "m.onnx"
    model.write_bytes(to_onnx(build_model(spec), spec, Head(), classes, "mnist"))
    image = tmp_path / "x\x1b[2Jy\nerror: fake.png"
    as_photo(np.linspace(0, 1, 784, dtype=np.float32)).save(image, format="PNG")
    missing = tmp_path / "gone\r.png"
    assert main([str(image), str(missing), "--model", str(model)]) == 2
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not any(ch in text for ch in "\x1b\x07\r")
    assert "\\x1b[2Jy\\nerror: fake.png: " in out
    assert err.count("\n") == 1 and "gone\\r.png: file not found" in err
    if "owned" in out:
        assert "\\x1b]0;owned\\x07" in out


# Subprocess: the console command's stdout pipe closed by its reader.
def test_broken_pipe_is_quiet(trained: tuple[Path, Split, list[str]], tmp_path: Path) -> None:
    """Issue 20 item 14: `predict ... | head -1` ends without a traceback."""
    as_photo(trained[1].images[0]).save(tmp_path / "a.png")
    env = {**git_env(), "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "mnist_pipeline", "predict", "a.png", "a.png"]
    process = subprocess.Popen(
        [*command, "--model", str(trained[0])],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before the first answer is printed
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and err == "", err


# Subprocess: what a fresh interpreter imports (python -X importtime).
def test_predict_imports_no_torch(trained: tuple[Path, Split, list[str]], tmp_path: Path) -> None:
    """The ONNX model runs in onnxruntime: the process never imports torch."""
    as_photo(trained[1].images[0]).save(tmp_path / "a.png")
    env = {**git_env(), "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-X", "importtime", "-m", "mnist_pipeline", "predict", "a.png"]
    result = subprocess.run(
        [*command, "--model", str(trained[0])], cwd=tmp_path, env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert "onnxruntime" in imported and "numpy" in imported  # the check sees imports
    assert not {name for name in imported if name.split(".")[0] == "torch"}
    assert result.stdout.startswith(f"a.png: {trained[2][0]}")


# Subprocess: the console command's exit status and stderr.
def test_command_line(tmp_path: Path) -> None:
    """The module runs as a program: bad input exits 2 with the one line, no traceback."""
    (tmp_path / "notes.png").write_text("hello\n")
    env = {**git_env(), "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "mnist_pipeline.tools.predict", "notes.png", "--model"]
    other_model(tmp_path / "m.onnx", 784, DIGITS)
    command.append("m.onnx")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert error_line(result) == (
        "error: notes.png: not a PNG or JPEG image; give a PNG or JPEG of one digit or garment"
    )
