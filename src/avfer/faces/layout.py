"""What the face stage writes per clip: the datasets of the face cache, one row per grid frame."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avfer.video import GRID_FPS

#: Sink of a clip's output: called with consecutive blocks of grid frames (every dataset of
#: :func:`face_layout`, the same number of rows), e.g. :meth:`avfer.io.ClipWriter.append`.
Sink = Callable[[dict[str, np.ndarray]], None]


@dataclass
class ClipFaces:
    """The face-cache datasets of one clip (empty when they went to a sink) plus counters for
    the log and the summary."""

    data: dict[str, np.ndarray]
    stats: dict[str, Any] = field(default_factory=dict)
    has_video: bool = True
    track: np.ndarray | None = None  # int32 [T] track id per frame (-1: no face), see track_clip

    @property
    def status(self) -> str:
        """``ok`` when the subject was found in at least one frame, else ``no_face``;
        ``no_video`` for an audio-only file (its frames are those of a clip without a face)."""
        if not self.has_video:
            return "no_video"
        return "ok" if int(self.stats.get("faces", 0)) > 0 else "no_face"


def face_layout(crop_size: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Per-frame datasets of a face-cache clip: name → (shape after ``T``, dtype)."""
    return {
        "faces": ((crop_size, crop_size, 3), np.uint8),
        "frame_index": ((), np.int32),
        "timestamp": ((), np.float64),
        "source_time": ((), np.float64),
        "box": ((4,), np.float32),
        "landmarks": ((5, 2), np.float32),
        "prob": ((), np.float32),
        "has_face": ((), bool),
    }


def empty_faces(n: int, crop_size: int, start: int = 0) -> dict[str, np.ndarray]:
    """Datasets of ``n`` grid frames (from grid frame ``start``) without any face."""
    return {
        "faces": np.zeros((n, crop_size, crop_size, 3), np.uint8),
        "frame_index": np.full(n, -1, np.int32),
        "timestamp": np.arange(start, start + n, dtype=np.float64) / GRID_FPS,
        "source_time": np.full(n, np.nan, np.float64),
        "box": np.zeros((n, 4), np.float32),
        "landmarks": np.zeros((n, 5, 2), np.float32),
        "prob": np.zeros(n, np.float32),
        "has_face": np.zeros(n, bool),
    }
