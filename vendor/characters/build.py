"""Builds ``src/mnist_pipeline/data/characters.npz``: letters, symbols and digits in the fonts
of ``fonts.txt``, each drawn on a 128-pixel square as it is and with its strokes widened, then
made 28×28 the way serving makes a user's image (``serving.images.to_mnist``). ``images``
uint8 ``[N, 28, 28]``; ``labels`` int8 ``[N]``: the digit, or -1 for a character that is no
digit. Letters a reader takes for a digit (O o I l S s Z z g q) are left out.
``train.characters`` trains on it (docs/training.md).

    PYTHONPATH=src .venv/bin/python vendor/characters/build.py   # needs npm and the registry
"""

from __future__ import annotations

import itertools
import string
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_pipeline.serving.images import to_mnist

HERE = Path(__file__).parent
OUT = Path(__file__).parents[2] / "src" / "mnist_pipeline" / "data" / "characters.npz"
LOOKALIKES = set("OoIlSsZzgq")  # 0 0 1 1 5 5 2 2 9 9
NONE = [c for c in string.ascii_letters + '+-=#@&%?*<>~$^()[]{}\\:;"' if c not in LOOKALIKES]
CANVAS = 128
WIDTHS = (0, 3)  # the font's own strokes, and widened like a pen's (pixels of CANVAS)


def fonts(folder: Path) -> list[Path]:
    """Each package's latin regular font, fetched with ``npm pack`` into ``folder``."""
    packages = [line for line in (HERE / "fonts.txt").read_text().splitlines() if line[:1] == "@"]
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    subprocess.run(["npm", "pack", "--silent", *packages], cwd=folder, **quiet)
    found = []
    for package in packages:
        name, version = package.removeprefix("@fontsource/").rsplit("@", 1)
        with tarfile.open(folder / f"fontsource-{name}-{version}.tgz") as archive:
            member = f"package/files/{name}-latin-400-normal.woff"
            (folder / f"{name}.woff").write_bytes(archive.extractfile(member).read())
        found.append(folder / f"{name}.woff")
    return found


def draw(font: ImageFont.FreeTypeFont, character: str, width: int) -> np.ndarray | None:
    """``character`` dark on a white square, centred, its strokes widened by ``width`` pixels;
    ``None`` if the font has no ink for it."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = pen.textbbox((0, 0), character, font, stroke_width=width)
    origin = ((CANVAS - left - right) / 2, (CANVAS - top - bottom) / 2)
    pen.text(origin, character, 0, font, stroke_width=width, stroke_fill=0)
    gray = np.asarray(image, dtype=np.float32)
    return None if gray.min() > 128 else gray


def main() -> None:
    images, labels = [], []
    with tempfile.TemporaryDirectory() as folder:
        for path in fonts(Path(folder)):
            font = ImageFont.truetype(str(path), CANVAS * 5 // 8)
            for character, width in itertools.product(NONE + list(string.digits), WIDTHS):
                gray = draw(font, character, width)
                if gray is not None:
                    images.append(np.round(to_mnist(gray, path.name) * 255).astype(np.uint8))
                    labels.append(int(character) if character.isdigit() else -1)
    np.savez_compressed(OUT, images=np.stack(images), labels=np.array(labels, np.int8))
    print(f"characters.npz: {len(images)} images, {labels.count(-1)} of no digit")


if __name__ == "__main__":
    main()
