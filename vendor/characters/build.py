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
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import ImageFont

HERE = Path(__file__).parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the check sets' own drawing

from checksets import CANVAS, draw  # noqa: E402
from mnist_pipeline.serving.images import to_mnist  # noqa: E402

OUT = REPO / "src" / "mnist_pipeline" / "data" / "characters.npz"
LOOKALIKES = set("OoIlSsZzgq")  # 0 0 1 1 5 5 2 2 9 9
NONE = [c for c in string.ascii_letters + '+-=#@&%?*<>~$^()[]{}\\:;"' if c not in LOOKALIKES]
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


def main() -> None:
    images, labels = [], []
    with tempfile.TemporaryDirectory() as folder:
        for path in fonts(Path(folder)):
            font = ImageFont.truetype(str(path), CANVAS * 5 // 8)
            for character, width in itertools.product(NONE + list(string.digits), WIDTHS):
                gray = draw(font, character, width)
                if gray is not None:
                    ink = to_mnist(gray.astype(np.float32), path.name)
                    images.append(np.round(ink * 255).astype(np.uint8))
                    labels.append(int(character) if character.isdigit() else -1)
    np.savez_compressed(OUT, images=np.stack(images), labels=np.array(labels, np.int8))
    print(f"characters.npz: {len(images)} images, {labels.count(-1)} of no digit")


if __name__ == "__main__":
    main()
