"""``mnist-predict IMAGE... [--json] [--save-input DIR]``: the trained model's top classes for
your own PNG or JPEG of one digit (or garment), each made an MNIST-style input
(``serving.images``) for the ONNX model in onnxruntime (no torch). A bad image gets its own
``error:`` line while the others are answered (exit 2); a bad model or ``--save-input`` folder
stops the run with one line, nothing printed or written."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.cli import EXIT_BAD_INPUT, entry_point
from mnist_pipeline.core.errors import PipelineError, printable
from mnist_pipeline.core.io import outputs
from mnist_pipeline.serving.images import read_image, to_mnist
from mnist_pipeline.serving.model import DEFAULT_MODEL, load_classifier

TOP = 3


def as_text(answer: Mapping[str, Any]) -> str:
    """``image: predicted`` and the ``TOP`` classes with their probabilities, escaped."""
    top = sorted(answer["probabilities"].items(), key=lambda item: -item[1])[:TOP]
    names = [printable(name) for name, _ in top]
    width = max(map(len, names))
    rows = [f"{printable(answer['image'])}: {printable(answer['predicted'])}"]
    rows += [f"  {name:<{width}}  {p:6.1%}" for name, (_, p) in zip(names, top, strict=True)]
    return "\n".join(rows)


def save_inputs(images: Sequence[str], fields: Sequence[np.ndarray], directory: Path) -> None:
    """Each 28×28 input as an 8-bit ``DIR/<image stem>.png``, all or none (``core.io.outputs``:
    the files replace their targets only once all are written)."""
    from PIL import Image

    targets: dict[Path, str] = {}  # checked before any folder is made
    for image in images:
        target = directory / f"{Path(image).stem}.png"
        if target in targets:
            raise PipelineError(
                f"--save-input: {printable(targets[target])} and {printable(image)} would both "
                f"be saved as {printable(target)}; rename one or predict them in two runs"
            )
        targets[target] = image
    with outputs() as out:
        for target, field in zip(targets, fields, strict=True):
            pixels = np.round(np.clip(field, 0.0, 1.0) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(out.file(target), format="PNG")


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``mnist-predict``: each image answered or refused on its own line."""
    parser = argparse.ArgumentParser(
        description="Ask the trained model about your own images (PNG or JPEG).",
        epilog="Exit status 2 when any image (or the model) could not be used.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help=f"ONNX model; default: {DEFAULT_MODEL}"
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
    classifier = load_classifier(args.model)
    fields: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    for index, image in enumerate(args.images):
        try:
            fields[index] = to_mnist(read_image(Path(image)), image)
        except PipelineError as err:
            errors[index] = str(err)
    found = classifier.classify([args.images[i] for i in fields], np.array([*fields.values()]))
    answers = dict(zip(fields, found, strict=True))
    if args.save_input:
        save_inputs([args.images[i] for i in fields], [*fields.values()], args.save_input)
    try:
        if args.json:
            entries = [
                answers.get(i) or {"image": image, "error": errors[i]}
                for i, image in enumerate(args.images)
            ]
            print(json.dumps(entries, indent=2), flush=True)
        for index in range(len(args.images)):
            if index in errors:
                print(f"error: {errors[index]}", file=sys.stderr, flush=True)
            elif not args.json:
                print(as_text(answers[index]), flush=True)
    except BrokenPipeError:  # `| head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BAD_INPUT if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
