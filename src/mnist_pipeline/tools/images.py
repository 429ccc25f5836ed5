"""Image files for ``predict``: a user's PNG or JPEG in, the 28×28 input it saw out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.core.io import atomic_path

IMAGE_FORMATS = ("PNG", "JPEG")
# Pixels read_image decodes at most: a 64-megapixel photo is ~250 MB as float32. The
# header says the size, so a decompression bomb (a small file that decodes to gigabytes)
# is refused before any pixel is decoded.
MAX_IMAGE_PIXELS = 64_000_000


def read_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A PNG or JPEG as grayscale ``[H, W]`` float32 in 0..255, upright, alpha over white.

    The size in the header is checked against ``max_pixels`` before decoding; the EXIF
    orientation of phone photos is applied; transparent pixels count as white paper.
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    fix = "give a PNG or JPEG of one digit or garment"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                if math.prod(image.size) > max_pixels:
                    raise Image.DecompressionBombError("{}×{}".format(*image.size))
                image.load()  # decode now, inside the error handling below
                upright = ImageOps.exif_transpose(image)
                if upright.mode in ("RGBA", "LA", "PA", "P") or "transparency" in upright.info:
                    rgba = upright.convert("RGBA")
                    upright = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
                gray = upright.convert("L")  # ITU-R 601-2 luma
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Ours above, or Pillow's own check (it runs in Image.open for huge sizes).
        raise PipelineError(
            f"{path}: image larger than the {max_pixels:,} pixels read here ({err}); "
            "crop or shrink it"
        ) from err
    except UnidentifiedImageError as err:
        raise PipelineError(f"{path}: not a PNG or JPEG image; {fix}") from err
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: file not found; {fix}") from err
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise PipelineError(f"{path}: cannot decode the image ({err}); {fix}") from err
    return np.asarray(gray, dtype=np.float32)


def write_png(image: np.ndarray, path: Path) -> None:
    """A ``[H, W]`` float image in [0, 1] as an 8-bit grayscale PNG (0 = black)."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
