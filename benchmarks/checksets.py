"""Check sets from outside MNIST, built offline and the same on every run: what a user's
images look like to ``predict`` and ``serve``. Each image is written as a PNG and read back
through the serving path (``serving.images.decode_image`` then ``to_mnist``).

- ``real_digits()``: scikit-learn's ``load_digits`` (UCI optical recognition of handwritten
  digits: 1,797 digits by 43 writers, 8×8 counts of ink in 4×4 blocks of 32×32 scans), each
  upscaled 12× with a paper margin, dark on light and light on dark: 3,594 images.
- ``non_digits()``: A–Z, a–z and ``+ = # @ & % ? * ! < > / ~ $`` drawn with thick strokes in
  the 12 DejaVu fonts matplotlib ships (Sans, Serif, Mono; regular, bold, oblique, both):
  792 images that are no digit.

    .venv/bin/python benchmarks/checksets.py OUT_DIR   # writes every 20th image as a PNG
"""

from __future__ import annotations

import io
import string
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_pipeline.serving.images import decode_image, to_mnist

SYMBOLS = "+=#@&%?*!<>/~$"
CHARACTERS = string.ascii_uppercase + string.ascii_lowercase + SYMBOLS
FONTS = [
    f"DejaVu{family}{style}.ttf"
    for family, styles in {
        "Sans": ("", "-Bold", "-Oblique", "-BoldOblique"),
        "Serif": ("", "-Bold", "-Italic", "-BoldItalic"),
        "SansMono": ("", "-Bold", "-Oblique", "-BoldOblique"),
    }.items()
    for style in styles
]
UPSCALE = 12  # 8×8 -> 96×96 of ink, 144×144 with the margin
CANVAS = 128  # the drawn characters' square, pixels


def png(gray: np.ndarray) -> bytes:
    """``gray`` ``[H, W]`` uint8 as PNG bytes: the file a user would give."""
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="PNG")
    return buffer.getvalue()


def as_input(gray: np.ndarray, where: str) -> np.ndarray:
    """What the model sees of ``gray`` once written and read as a PNG: ``[784]``."""
    return to_mnist(decode_image(png(gray), where), where).reshape(-1)


def scans() -> Iterator[tuple[np.ndarray, int]]:
    """Each ``load_digits`` digit as a 144×144 light-on-dark scan, with its label."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for counts, label in zip(digits.images, digits.target, strict=True):
        ink = np.pad(counts * (255 / 16), 2).astype(np.uint8)  # a margin of paper
        side = ink.shape[0] * UPSCALE
        big = Image.fromarray(ink).resize((side, side), Image.Resampling.BICUBIC)
        yield np.asarray(big), int(label)


def real_digits() -> tuple[np.ndarray, np.ndarray]:
    """Handwritten digits that are not MNIST, both polarities: ``[N, 784]``, labels ``[N]``."""
    images, labels = [], []
    for n, (light_on_dark, label) in enumerate(scans()):
        for gray in (light_on_dark, 255 - light_on_dark):
            images.append(as_input(gray, f"digit {n}"))
            labels.append(label)
    return np.stack(images), np.array(labels)


def drawings() -> Iterator[tuple[np.ndarray, str]]:
    """Each character in each font, dark on light, its strokes widened by 4 pixels of 128
    (a pen's line rather than a font's), centred on a white square."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name in FONTS:
        font = ImageFont.truetype(str(folder / name), size=CANVAS * 5 // 8)
        for character in CHARACTERS:
            image = Image.new("L", (CANVAS, CANVAS), 255)
            draw = ImageDraw.Draw(image)
            width = CANVAS // 32
            left, top, right, bottom = draw.textbbox((0, 0), character, font, stroke_width=width)
            origin = ((CANVAS - left - right) / 2, (CANVAS - top - bottom) / 2)
            draw.text(origin, character, 0, font, stroke_width=width, stroke_fill=0)
            yield np.asarray(image), character


def non_digits() -> tuple[np.ndarray, np.ndarray]:
    """Drawn letters and symbols: ``[N, 784]`` and the characters ``[N]``."""
    images, characters = [], []
    for gray, character in drawings():
        images.append(as_input(gray, f"character {character!r}"))
        characters.append(character)
    return np.stack(images), np.array(characters)


def main(out: Path) -> None:
    """Write every 20th image of both sets as the PNG a user would give."""
    out.mkdir(parents=True, exist_ok=True)
    for n, (gray, label) in enumerate(scans()):
        if n % 20 == 0:
            (out / f"digit-{n:04d}-{label}.png").write_bytes(png(255 - gray))
    for n, (gray, character) in enumerate(drawings()):
        if n % 20 == 0:
            (out / f"char-{n:04d}-{ord(character)}.png").write_bytes(png(gray))
    print(f"written: {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
