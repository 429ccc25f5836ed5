"""Check sets from outside MNIST, built offline, each image written as a PNG and read back
through the serving path: ``real_digits()`` (scikit-learn's UCI digits by 43 writers, upscaled,
both polarities: 3,594) and ``non_digits()`` (letters and symbols in matplotlib's DejaVu fonts:
792; with ``handwriting=True``, in the ten Debian handwriting fonts of ``HANDWRITING`` instead,
where installed). No font of either set is in ``vendor/characters/fonts.txt``, whose letters train.
``python benchmarks/checksets.py OUT_DIR`` writes every 20th image as a PNG."""

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
SLANTS = {"Sans": "Oblique", "Serif": "Italic", "SansMono": "Oblique"}  # matplotlib's DejaVu
FONTS = [
    f"DejaVu{family}{style}"
    for family, slant in SLANTS.items()
    for style in ("", "-Bold", f"-{slant}", f"-Bold{slant}")
]
# apt-get install fonts-dkg-handwriting fonts-bwht fonts-breip fonts-femkeklaver fonts-humor-sans
HANDWRITING = [
    "truetype/fifthhorseman/dkg.ttf", "truetype/breip/Breip.ttf",
    "truetype/femkeklaver/femkeklaver.ttf", "truetype/humor-sans/Humor-Sans.ttf",
    *(f"opentype/bwht/BecauseWe{w}-Regular.otf"
      for w in ("Build", "Connect", "Create", "Learn", "Mentor", "Organize")),
]  # fmt: skip
CANVAS = 128  # the drawn characters' square, pixels


def png(gray: np.ndarray) -> bytes:
    """``gray`` ``[H, W]`` uint8 as the PNG file a user would give."""
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
        big = Image.fromarray(ink).resize((ink.shape[0] * 12,) * 2, Image.Resampling.BICUBIC)
        yield np.asarray(big), int(label)


def draw(font: ImageFont.FreeTypeFont, character: str, width: int) -> np.ndarray | None:
    """``character`` dark on a white ``CANVAS`` square, centred, its strokes widened by
    ``width`` pixels; ``None`` where the font draws no ink for it. ``vendor/characters``
    draws its training characters with this too, so the two differ only in their fonts."""
    image = Image.new("L", (CANVAS, CANVAS), 255)
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = pen.textbbox((0, 0), character, font, stroke_width=width)
    origin = ((CANVAS - left - right) / 2, (CANVAS - top - bottom) / 2)
    pen.text(origin, character, 0, font, stroke_width=width, stroke_fill=0)
    gray = np.asarray(image)
    return None if gray.min() > 128 else gray


def drawings(handwriting: bool = False) -> Iterator[tuple[np.ndarray, str]]:
    """Each character in each font, dark on light, its strokes widened by 4 pixels of 128 (a
    pen's line rather than a font's), centred on a white square."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [folder / f"{name}.ttf" for name in FONTS]
    if handwriting:
        paths = [p for p in (Path("/usr/share/fonts") / n for n in HANDWRITING) if p.exists()]
    for path in paths:
        font = ImageFont.truetype(str(path), CANVAS * 5 // 8)
        for character in string.ascii_uppercase + string.ascii_lowercase + SYMBOLS:
            gray = draw(font, character, CANVAS // 32)  # a pen's line rather than a font's
            if gray is not None:
                yield gray, character


def real_digits() -> tuple[np.ndarray, np.ndarray]:
    """Handwritten digits that are not MNIST, both polarities: ``[N, 784]``, labels ``[N]``."""
    images, labels = [], []
    for n, (scan, label) in enumerate(scans()):
        images += [as_input(gray, f"digit {n}") for gray in (scan, 255 - scan)]
        labels += [label, label]
    return np.stack(images), np.array(labels)


def non_digits(handwriting: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Drawn letters and symbols: ``[N, 784]`` and the characters ``[N]``."""
    pairs = [(as_input(gray, f"character {c!r}"), c) for gray, c in drawings(handwriting)]
    images = [image for image, _ in pairs] or [np.zeros((0, 784), np.float32)]
    return np.stack(images).reshape(-1, 784), np.array([c for _, c in pairs])


if __name__ == "__main__":  # every 20th image of both sets as the PNG a user would give
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for n, (gray, label) in enumerate(scans()):
        if n % 20 == 0:
            (out / f"digit-{n:04d}-{label}.png").write_bytes(png(255 - gray))
    for n, (gray, character) in enumerate(drawings()):
        if n % 20 == 0:
            (out / f"char-{n:04d}-{ord(character)}.png").write_bytes(png(gray))
    print(f"written: {out}")
