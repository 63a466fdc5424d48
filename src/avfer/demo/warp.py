"""Fast image sampling helpers for the face renderer (numpy only, no BLAS calls)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def reflect(x: np.ndarray, n: int) -> np.ndarray:
    """Reflect coordinates into [0, n-1] (mirror padding)."""
    period = 2 * (n - 1)
    x = np.abs(x) % period
    return (n - 1) - np.abs(x - (n - 1))


def bilinear(table: np.ndarray, shape: tuple[int, int], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup at (x, y) of the rows of ``table``: a (height, width) grid, flattened.

    Coordinates are clamped to the grid.
    """
    h, w = shape
    x0 = np.clip(np.floor(x), 0, w - 2)
    y0 = np.clip(np.floor(y), 0, h - 2)
    fx = np.clip(x - x0, 0, 1)[:, None]
    fy = np.clip(y - y0, 0, 1)[:, None]
    i = (y0 * w + x0).astype(np.intp)
    top = np.take(table, i, axis=0)
    top += (np.take(table, i + 1, axis=0) - top) * fx
    bot = np.take(table, i + w, axis=0)
    bot += (np.take(table, i + w + 1, axis=0) - bot) * fx
    top += (bot - top) * fy
    return top


@lru_cache(maxsize=8)
def upsampler(size: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse output coordinates (every ``step`` px, last pixel included), and for every
    pixel the coarse index to its left and the linear weight of the next one."""
    coarse = np.unique(np.r_[np.arange(0, size, step), size - 1]).astype(np.float32)
    fine = np.arange(size, dtype=np.float32)
    j = np.clip(np.searchsorted(coarse, fine, side="right") - 1, 0, len(coarse) - 2)
    f = (fine - coarse[j]) / (coarse[j + 1] - coarse[j])
    return coarse, j, f.astype(np.float32)


def upsample(grid: np.ndarray, j: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Separable linear interpolation of a coarse square grid to every pixel."""
    rows = grid[j] * (1 - f[:, None]) + grid[j + 1] * f[:, None]
    return rows[:, j] * (1 - f) + rows[:, j + 1] * f
