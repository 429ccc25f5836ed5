"""Ask the trained model about your own image: a PNG or JPEG of one digit (or garment).

    mnist-predict my_digit.png                       # top-3 classes with probabilities
    mnist-predict a.png b.jpg --json                 # one JSON list, for scripts
    mnist-predict my_digit.png --save-input seen/    # also write the 28×28 the model saw
    PYTHONPATH=src python -m mnist_pipeline.tools.predict my_digit.png --model other.safetensors

Each image becomes an MNIST-style input the way MNIST itself was made: grayscale; inverted
when it is dark ink on light paper (the median of its border decides); cropped to the ink;
scaled to fit a 20×20 box keeping its aspect ratio; placed in a 28×28 field with its centre
of mass on the field's centre (14, 14), as in MNIST; scaled to [0, 1] (ink peak = 1). The
model is ``models/model.safetensors`` unless ``--model`` says otherwise; it carries its
architecture, output function and class names, so no other file is read.

Probabilities are the model's output function of its logits: softmax (they sum to 1) or,
for ``train.output: sigmoid`` models, one sigmoid per class. The predicted class is the
argmax of the logits, as in the evaluate stage. Bad input (a file that is not a PNG/JPEG,
a blank image, an image of more than 64 megapixels, a model that does not take 28×28
images) ends with one ``error:`` line and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.cli import entry_point
from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import IMAGE_SIDE
from mnist_pipeline.data.tensors import read_tensor_metadata
from mnist_pipeline.tools.images import read_image, write_png

BOX = 20  # the digit is scaled to fit [20, 20] ...
CENTRE = IMAGE_SIDE / 2  # ... and its centre of mass put here (row, column); MNIST's is 14.0
MIN_CONTRAST = 32.0  # of 255: weaker ink than this is a blank image (paper grain, noise)
INK = 0.1  # share of the ink peak above which a pixel counts when cropping
TOP = 3
DEFAULT_MODEL = Path("models/model.safetensors")


def ink_map(gray: np.ndarray, where: str) -> np.ndarray:
    """``[H, W]`` gray 0..255 -> ink ``[H, W]`` in [0, 1]: light on dark, background 0.

    The border's median is the paper: light paper means dark ink, so the image is inverted.
    """
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = paper - gray if paper > 127.5 else gray - paper
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise PipelineError(
            f"{where}: blank image (ink contrast {peak:.0f}/255 against its background); "
            "give an image of one digit or garment, dark on light or light on dark"
        )
    return np.clip(ink / peak, 0.0, 1.0)


def fit_box(ink: np.ndarray) -> np.ndarray:
    """Crop ``ink`` to the pixels above ``INK`` and scale it to fit ``BOX``×``BOX``."""
    from PIL import Image

    left, top, right, bottom = Image.fromarray(ink > INK).getbbox()
    crop = ink[top:bottom, left:right]  # [h, w]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL: (w, h)
    # On the float image, antialiased as MNIST's normalisation was: shrinking averages each
    # output pixel's area (exact for an image enlarged by pixel replication), enlarging a
    # small drawing interpolates (Lanczos) instead of making blocks.
    resample = Image.Resampling.BOX if scale <= 1 else Image.Resampling.LANCZOS
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize(size, resample)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def centre(box: np.ndarray) -> np.ndarray:
    """Place ``box`` ``[h, w]`` in the 28×28 field with its centre of mass nearest (14, 14)."""
    height, width = box.shape
    rows_cols = np.indices(box.shape).reshape(2, -1)
    mass_row, mass_col = np.average(rows_cols, axis=1, weights=box.ravel())
    # Whole-pixel shifts as in MNIST, kept inside the field.
    top = min(max(round(CENTRE - mass_row), 0), IMAGE_SIDE - height)
    left = min(max(round(CENTRE - mass_col), 0), IMAGE_SIDE - width)
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    field[top : top + height, left : left + width] = box
    return field / field.max()


def to_mnist(gray: np.ndarray, where: str = "the image") -> np.ndarray:
    """Any grayscale image ``[H, W]`` 0..255 -> an MNIST-style ``[28, 28]`` float32 in [0, 1]."""
    return centre(fit_box(ink_map(gray, where)))


def as_text(answer: Mapping[str, Any]) -> str:
    """``image: predicted`` and the ``TOP`` classes with their probabilities (``classify``'s)."""
    top = sorted(answer["probabilities"].items(), key=lambda item: -item[1])[:TOP]
    width = max(len(name) for name, _ in top)
    lines = [f"{answer['image']}: {answer['predicted']}"]
    return "\n".join(lines + [f"  {name:<{width}}  {p:6.1%}" for name, p in top])


def saved_classes(path: Path, num_classes: int) -> tuple[str, ...]:
    """The class names saved with a model (train writes them), or ``"0"``, ``"1"``, …"""
    raw = read_tensor_metadata(path).get("classes")
    if raw is None:  # a model saved before the names were
        return tuple(str(index) for index in range(num_classes))
    try:
        classes = tuple(str(name) for name in json.loads(raw))
    except (TypeError, ValueError) as err:
        raise PipelineError(f"{path}: unreadable class names in its metadata ({err})") from err
    if len(classes) != num_classes:
        raise PipelineError(
            f"{path}: {len(classes)} class names for {num_classes} outputs in its metadata; "
            "rerun the train stage"
        )
    return classes


def classify(model_path: Path, images: Sequence[str], inputs: np.ndarray) -> list[dict[str, Any]]:
    """Run the saved model on ``inputs`` ``[N, 28, 28]``: one answer per image, ``{image,
    predicted, probabilities}`` (the ``--json`` output; class name -> probability, in class
    order, 6 decimals)."""
    import torch

    from mnist_pipeline.core.runtime import configure_torch
    from mnist_pipeline.learning.model_file import load_model
    from mnist_pipeline.learning.models import predict_logits

    configure_torch(threads=1)  # the stages' portable kernels: evaluate's answers on any CPU
    model, spec, _, output = load_model(model_path)
    if spec.in_features != IMAGE_SIDE * IMAGE_SIDE:
        raise PipelineError(
            f"{model_path}: the model takes {spec.in_features} input features, not "
            f"{IMAGE_SIDE}×{IMAGE_SIDE} = {IMAGE_SIDE * IMAGE_SIDE}: it was trained on another "
            "kind of data; use a model this pipeline trained (dvc repro) or pass --model"
        )
    classes = saved_classes(model_path, spec.num_classes)
    logits = predict_logits(model, torch.from_numpy(inputs.reshape(len(inputs), -1)))
    probs = torch.softmax(logits, dim=1) if output == "softmax" else torch.sigmoid(logits)
    return [
        {
            "image": image,
            "predicted": classes[int(row_logits.argmax())],  # as evaluate: argmax of the logits
            "probabilities": {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)},
        }
        for image, row_logits, row in zip(images, logits, probs, strict=True)
    ]


def saved_input_paths(images: Sequence[str], directory: Path) -> list[Path]:
    """``DIR/<image stem>.png`` for each image; two images with one stem is an error."""
    paths = [directory / f"{Path(image).stem}.png" for image in images]
    seen: dict[Path, str] = {}
    for image, path in zip(images, paths, strict=True):
        if path in seen:
            raise PipelineError(
                f"--save-input: {seen[path]} and {image} would both be saved as {path}; "
                "rename one or predict them in two runs"
            )
        seen[path] = image
    return paths


@entry_point
def main(argv: list[str] | None = None) -> None:
    """``mnist-predict``: read every image, then predict, then write: a bad one stops the run
    before any output (exit status 2 with one ``error:`` line)."""
    parser = argparse.ArgumentParser(
        prog="mnist-predict",
        description="classify your own PNG or JPEG of one digit (or garment)",
        epilog="Exit status 2 with one 'error:' line on bad input.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help=f"default: {DEFAULT_MODEL}"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON list: image, predicted, probabilities"
    )
    parser.add_argument(
        "--save-input",
        type=Path,
        metavar="DIR",
        help="write the 28×28 input the model saw as DIR/<image name>.png",
    )
    args = parser.parse_args(argv)
    inputs = np.stack([to_mnist(read_image(Path(image)), image) for image in args.images])
    targets = saved_input_paths(args.images, args.save_input) if args.save_input else []
    answers = classify(args.model, args.images, inputs)
    for field, target in zip(inputs[: len(targets)], targets, strict=True):
        write_png(field, target)
    if args.json:
        print(json.dumps(answers, indent=2))
    else:
        print("\n".join(map(as_text, answers)))


if __name__ == "__main__":
    raise SystemExit(main())
