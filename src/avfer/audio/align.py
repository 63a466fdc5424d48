"""Pool 10 ms LLD frames onto the 25 fps video frame grid of :mod:`avfer.video`.

Grid frame ``t`` spans ``[t / fps, (t + 1) / fps)`` seconds from the video stream start. An LLD
frame belongs to the grid frame that contains its centre (``start + window / 2`` on the video
timeline), so frame ``t`` of the audio cache and of the face cache describe the same 40 ms.
Pooling is vectorised: LLD frames are time-ordered, so each grid frame is a contiguous run
reduced with :func:`numpy.add.reduceat`.
"""

from __future__ import annotations

import numpy as np

from avfer.video import GRID_FPS

_EPS = 1e-6  # in frames (40 ns at 25 fps): a centre exactly on a boundary belongs to the later frame


def grid_index(times: np.ndarray, n_frames: int, fps: float = GRID_FPS) -> np.ndarray:
    """Grid frame of each time (s on the video timeline); -1 outside ``[0, n_frames / fps)``."""
    idx = np.floor(np.asarray(times, dtype=np.float64) * fps + _EPS).astype(np.int64)
    idx[(idx < 0) | (idx >= n_frames)] = -1
    return idx


def pool_to_grid(
    values: np.ndarray,
    times: np.ndarray,
    n_frames: int,
    *,
    fps: float = GRID_FPS,
    with_std: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (and optionally standard deviation) of the rows of ``values`` per grid frame.

    Args:
        values: [N, D] frames, ``times``: [N] their times (s on the video timeline), any order.
        n_frames: grid length T (``avfer.video.grid_length(probe(path).duration)``).
        with_std: also return the per-frame population std as D more columns.

    Returns:
        ``pooled`` float32 [T, D] (or [T, 2D]: means then stds) and ``mask`` bool [T], True
        where at least one frame fell in the grid frame. Frames without any are zero.
        Non-finite values are treated as 0.
    """
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.ndim != 2 or len(values) != len(times):
        raise ValueError(f"values {values.shape} and times {np.shape(times)} do not match")
    d = values.shape[1]
    out = np.zeros((n_frames, 2 * d if with_std else d), dtype=np.float64)
    mask = np.zeros(n_frames, dtype=bool)
    idx = grid_index(times, n_frames, fps)
    keep = idx >= 0
    if not keep.any():
        return out.astype(np.float32), mask
    idx, vals = idx[keep], values[keep]
    if np.any(np.diff(idx) < 0):
        order = np.argsort(idx, kind="stable")
        idx, vals = idx[order], vals[order]
    starts = np.flatnonzero(np.r_[True, np.diff(idx) != 0])
    frames = idx[starts]
    counts = np.diff(np.r_[starts, len(idx)])[:, None]
    mean = np.add.reduceat(vals, starts, axis=0) / counts
    out[frames, :d] = mean
    mask[frames] = True
    if with_std:
        dev = vals - np.repeat(mean, counts[:, 0], axis=0)
        out[frames, d:] = np.sqrt(np.add.reduceat(dev * dev, starts, axis=0) / counts)
    return out.astype(np.float32), mask


def lld_centres(start: np.ndarray, window: float, offset: float) -> np.ndarray:
    """Video-timeline times of LLD frames: ``offset + start + window / 2``.

    ``offset`` is the video-timeline time of the signal's first sample (audio first-sample
    time minus video stream start time, plus any samples cropped from the front).
    """
    return offset + np.asarray(start, dtype=np.float64) + window / 2.0
