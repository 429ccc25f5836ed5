"""A user's PNG or JPEG -> the 28×28 input the model takes, made the way MNIST was: grayscale,
light ink on dark, cropped to the ink, fit to 20×20, centre of mass at the centre, peak 1."""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.splits import IMAGE_SIDE

BOX = 20  # the digit is scaled to fit [20, 20] ...
CENTRE = IMAGE_SIDE / 2  # ... and its centre of mass put here (row, column); MNIST's is 14.0
MIN_CONTRAST = 32.0  # of 255: weaker ink than this is a blank image (paper grain, noise)
INK = 0.1  # share of the ink peak above which a pixel counts when cropping
IMAGE_FORMATS = ("PNG", "JPEG")
MAX_IMAGE_PIXELS = 4_000_000  # decoded at most; checked from the header, before decoding
REDUCED_SIDE = 512  # a larger image is decoded or box-reduced to about this many pixels a side
MAX_IMAGE_BYTES = 32 * 2**20  # a file larger than this is no photo of one digit
FIX = "give a PNG or JPEG of one digit or garment"


class ImageError(PipelineError):
    """An image that cannot be used; ``kind`` (not-image, too-large, corrupt, blank) says why."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def decode_image(data: bytes, where: str) -> np.ndarray:
    """PNG or JPEG bytes as grayscale ``[H, W]`` float32 in 0..255, bounded in memory: pixels
    counted before decoding, a large JPEG decoded at reduced scale, the rest box-reduced."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                image.draft("L", (REDUCED_SIDE, REDUCED_SIDE))  # JPEG only: smaller decode
                if math.prod(image.size) > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError("{}×{}".format(*image.size))
                image.verify()  # PNG chunk CRCs and structure
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                image.draft("L", (REDUCED_SIDE, REDUCED_SIDE))
                upright = ImageOps.exif_transpose(image)  # decoded here, errors caught below
            if upright.mode.startswith("I"):  # 16-bit grayscale: 0..65535 -> 0..255
                upright = Image.fromarray(np.asarray(upright, dtype=np.float32) / 257.0)
            elif upright.mode in ("1", "P", "LA", "PA") or "transparency" in upright.info:
                upright = upright.convert("RGBA")
            upright = upright.reduce(max(1, max(upright.size) // REDUCED_SIDE))  # box means
            if upright.mode == "RGBA":  # transparent parts are white paper
                upright = Image.alpha_composite(Image.new("RGBA", upright.size, "white"), upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(  # ours above, or Pillow's own check in Image.open
            f"{where}: image larger than the {MAX_IMAGE_PIXELS:,} pixels read here ({err}); "
            "crop or shrink it",
            "too-large",
        ) from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{where}: not a PNG or JPEG image; {FIX}", "not-image") from err
    except (OSError, SyntaxError, ValueError) as err:  # truncated or broken data
        raise ImageError(f"{where}: cannot decode the image ({err}); {FIX}", "corrupt") from err
    gray = upright if upright.mode == "F" else upright.convert("L")  # ITU-R 601-2 luma
    return np.asarray(gray, dtype=np.float32)


def read_image(path: Path) -> np.ndarray:
    """``decode_image`` of a regular file (a FIFO or device is refused, not waited on)."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ImageError(f"{path}: not a regular file; {FIX}", "not-image")
            data = file.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError as err:
        raise ImageError(f"{path}: file not found; {FIX}", "not-image") from err
    except OSError as err:
        raise ImageError(f"{path}: cannot read ({err.strerror}); {FIX}", "corrupt") from err
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(
            f"{path}: file larger than {MAX_IMAGE_BYTES:,} bytes; crop or shrink it", "too-large"
        )
    return decode_image(data, str(path))


def to_mnist(gray: np.ndarray, where: str = "the image") -> np.ndarray:
    """Any grayscale image ``[H, W]`` 0..255 -> an MNIST-style ``[28, 28]`` float32 in [0, 1]."""
    from PIL import Image

    # Ink, light on dark: the border's median is the paper; light paper means dark ink.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = paper - gray if paper > 127.5 else gray - paper
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise ImageError(
            f"{where}: blank image (ink contrast {peak:.0f}/255 against its "
            "background); give an image of one digit or garment, dark on light or light on dark",
            "blank",
        )
    ink = np.clip(ink / peak, 0.0, 1.0)
    left, top, right, bottom = Image.fromarray(ink > INK).getbbox()
    crop = ink[top:bottom, left:right]
    scale = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))  # (w, h)
    # Antialiased as MNIST was: shrinking averages areas, enlarging interpolates (Lanczos).
    resample = Image.Resampling.BOX if scale <= 1 else Image.Resampling.LANCZOS
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize(size, resample)
    box = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    # Whole-pixel shifts, as in MNIST, that bring the centre of mass nearest CENTRE.
    height, width = box.shape
    mass_row, mass_col = (np.indices(box.shape) * box).sum(axis=(1, 2)) / box.sum()
    top = min(max(round(CENTRE - mass_row), 0), IMAGE_SIDE - height)
    left = min(max(round(CENTRE - mass_col), 0), IMAGE_SIDE - width)
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    field[top : top + height, left : left + width] = box
    return field / field.max()
