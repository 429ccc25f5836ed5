"""``mnist-predict IMAGE... [--json]``: the ONNX model's top classes for your own images, or
"unsure" (``predicted`` null) below the model's threshold. A bad image gets its own ``error:``
line while the others are answered (exit 2)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.core.cli import EXIT_BAD_INPUT, entry_point
from mnist_pipeline.core.errors import printable
from mnist_pipeline.serving.images import ImageError, read_image, to_mnist
from mnist_pipeline.serving.model import DEFAULT_MODEL, load_classifier


def as_text(answer: Mapping[str, Any]) -> str:
    """``image: predicted`` (or ``unsure``) and the top classes with their probabilities,
    escaped."""
    names = [printable(entry["class"]) for entry in answer["top"]]
    width = max(map(len, names))
    said = "unsure" if answer["predicted"] is None else printable(answer["predicted"])
    rows = [f"{printable(answer['image'])}: {said}"]
    for name, entry in zip(names, answer["top"], strict=True):
        rows.append(f"  {name:<{width}}  {entry['probability']:6.1%}")
    return "\n".join(rows)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """``mnist-predict``: each image answered or refused on its own line."""
    parser = argparse.ArgumentParser(
        description="Ask the trained model about your own images (PNG or JPEG).",
        epilog="Exit status 2 when any image (or the model) could not be used.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model; %(default)s")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON list: image, predicted (null: unsure), top, probabilities",
    )
    args = parser.parse_args(argv)
    classifier = load_classifier(args.model)
    answers = []
    for image in args.images:
        try:
            field = to_mnist(read_image(Path(image)), image)
        except ImageError as err:
            answers.append({"image": image, "error": str(err)})
        else:
            answers += classifier.classify([image], field[np.newaxis])
    try:
        if args.json:
            print(json.dumps(answers, indent=2), flush=True)
        for answer in answers:
            if "error" in answer:
                print(f"error: {printable(answer['error'])}", file=sys.stderr, flush=True)
            elif not args.json:
                print(as_text(answer), flush=True)
    except BrokenPipeError:  # `| head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BAD_INPUT if any("error" in answer for answer in answers) else 0


if __name__ == "__main__":
    raise SystemExit(main())
