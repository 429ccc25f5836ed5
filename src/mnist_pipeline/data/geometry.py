"""Random geometry for augmentation and robustness checks: per image a thicker or thinner
stroke, then an affine warp about the centre (scipy's ``affine_transform`` at ``order=1``, a
batch at once). Only IEEE ``+ - * /``, floor and min/max touch the draws and the pixels (no
libm, BLAS or SIMD transcendental): the same generator state, the same bytes on any x86-64."""

from __future__ import annotations

import functools

import numpy as np

from mnist_pipeline.data.splits import IMAGE_SIDE

_ROWS, _COLS = np.indices((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
_CENTRE = (IMAGE_SIDE - 1) / 2


def _sin_cos(angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of angles within ±π/4 by their Taylor series (error < 1e-17)."""
    sin, cos, term = np.zeros_like(angle), np.zeros_like(angle), np.ones_like(angle)
    for k in range(0, 24, 2):  # term = angle**k / k!
        sign = 1.0 if k % 4 == 0 else -1.0
        cos += sign * term
        term = term * angle / (k + 1)
        sin += sign * term
        term = term * angle / (k + 2)
    return sin, cos


def _stroke(images: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Grey dilation (``steps > 0``) or erosion (``< 0``) of each image by ``|steps|`` 2×2
    windows, alternating their corner so that two make a centred 3×3."""
    for step in range(1, int(np.abs(steps).max(initial=0)) + 1):
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
        first = 1 if step % 2 else 0  # the window's top-left corner, in padded pixels
        corners = [(first + i, first + j) for i in (0, 1) for j in (0, 1)]
        views = [padded[:, r : r + IMAGE_SIDE, c : c + IMAGE_SIDE] for r, c in corners]
        grow, shrink = (steps >= step)[:, None, None], (steps <= -step)[:, None, None]
        images = np.where(grow, functools.reduce(np.maximum, views), images)
        images = np.where(shrink, functools.reduce(np.minimum, views), images)
    return images


def _warp(images: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Bilinear, in float32: output pixel (r, c) reads ``matrix @ (r, c) + offset`` of its
    image, 0 outside (reads beyond the 1-pixel zero border are moved onto it)."""
    n, side = len(images), IMAGE_SIDE + 3  # padded: 1 before, 2 after (the reads at top + 1)
    m, o = matrix[:, :, :, None, None], offset[:, :, None, None]
    rows = np.clip(m[:, 0, 0] * _ROWS + m[:, 0, 1] * _COLS + o[:, 0], -1, IMAGE_SIDE)
    cols = np.clip(m[:, 1, 0] * _ROWS + m[:, 1, 1] * _COLS + o[:, 1], -1, IMAGE_SIDE)
    top, left = np.floor(rows), np.floor(cols)
    down, right = rows - top, cols - left
    flat = np.pad(images, ((0, 0), (1, 2), (1, 2))).reshape(-1)
    first = np.arange(n)[:, None, None] * side + top.astype(np.intp) + 1
    index = first * side + left.astype(np.intp) + 1
    a, b, c, d = (flat[index + step] for step in (0, 1, side, side + 1))
    return (a * (1 - right) + b * right) * (1 - down) + (c * (1 - right) + d * right) * down


def perturb(
    images: np.ndarray,
    rng: np.random.Generator,
    rotate: float = 0.0,
    shift: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
    stroke: float = 0.0,
) -> np.ndarray:
    """``images`` ``[N, 784]`` in [0, 1], each warped at random: rotated by up to ±``rotate``
    degrees, sheared by ±``shear`` degrees, sized by 1 ± ``scale``, moved by ±``shift``
    pixels per axis, its stroke ``round(±stroke)`` pixels thicker or thinner. Six uniform
    draws per image whatever the settings; all zero: the same bytes back."""
    n = len(images)
    u = rng.uniform(-1.0, 1.0, size=(6, n))
    sin, cos = _sin_cos(u[0] * (rotate * np.pi / 180))
    shear_sin, shear_cos = _sin_cos(u[1] * (shear * np.pi / 180))
    slant, size = shear_sin / shear_cos, 1.0 + u[2] * scale
    # The inverse of rotate · shear · size: where each output pixel reads the input.
    matrix = np.stack([[cos + slant * sin, sin - slant * cos], [-sin, cos]]) / size
    matrix = matrix.transpose(2, 0, 1)
    moved = np.stack([_CENTRE + u[3] * shift, _CENTRE + u[4] * shift])  # the centre's image
    offset = _CENTRE - (matrix[:, :, 0] * moved[0, :, None] + matrix[:, :, 1] * moved[1, :, None])
    square = images.reshape(n, IMAGE_SIDE, IMAGE_SIDE)
    thick = _stroke(square, np.rint(u[5] * stroke).astype(np.int64))
    f32 = np.float32
    warped = _warp(thick.astype(f32), matrix.astype(f32), offset.astype(f32))
    return np.clip(warped, 0.0, 1.0).reshape(n, -1)
