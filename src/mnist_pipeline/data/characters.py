"""``characters.npz`` beside this file: letters, symbols and digits drawn in the fonts of
``vendor/characters/fonts.txt`` (by its ``build.py``), the images ``train.characters`` adds to
each minibatch so a model learns what is no digit."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mnist_pipeline.core.errors import PipelineError
from mnist_pipeline.data.sources import DATASETS
from mnist_pipeline.data.splits import IMAGE_SIDE, N_FEATURES, Split

DIGITS = DATASETS["mnist"].classes  # the only classes the characters can train
CHARACTERS = Path(__file__).with_name("characters.npz")


def load_characters(path: Path = CHARACTERS) -> Split:
    """The characters as a ``Split`` of digit classes; a character that is no digit has label
    ``losses.NO_CLASS`` (-1)."""
    fix = f"restore it with `git checkout -- {path.name}` or set every train.characters to 0"
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise PipelineError(f"{path}: cannot read the characters ({err}); {fix}") from err
    shape = (len(labels), IMAGE_SIDE, IMAGE_SIDE)
    labelled = np.isin(labels, np.arange(-1, 10)).all()
    if images.dtype != np.uint8 or images.shape != shape or not labelled:
        raise PipelineError(f"{path}: not uint8 images [N, 28, 28] with labels -1..9; {fix}")
    flat = images.reshape(-1, N_FEATURES).astype(np.float32) / 255.0
    return Split(flat, labels.astype(np.int64), DIGITS)
