"""The tracked faces of a video as ``avfer predict`` keeps them: per grid frame and subject the
box, landmarks, detection probability, track id and the face model's logits, plus the main
subject's CNN features when the bundle's clip models need them, collected chunk by chunk from
the face stage's ring of crops (:func:`avfer.faces.track_clip` with ``window``). The crops
themselves are never kept, so memory grows by about 100 bytes a frame (2 kB with features),
not by the 37 kB of a 112 px crop: a clip of any length fits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from avfer.labels import EMOTIONS
from avfer.video import GridFrames

KEPT = ("has_face", "box", "landmarks", "prob")  # per-frame face datasets kept (not "faces")
Classify = Callable[[np.ndarray], np.ndarray]  # uint8 [n, h, w, 3] crops -> float32 [n, D]


class TrackLog:
    """``on_chunk`` of :func:`avfer.faces.track_clip` (ring of ``window`` frames): classifies
    each chunk's crops with ``classify`` (logits ``[n, 7]``), extracts the main subject's
    ``features`` (``[n, D]``, optional) and keeps only those and the small per-frame arrays.
    ``each_chunk(g, subjects, logits)`` (optional) sees every chunk with its logits (drawing,
    progress)."""

    def __init__(
        self,
        window: int,
        classify: Classify,
        features: Classify | None = None,
        feature_dim: int = 0,
        each_chunk: Callable[[GridFrames, list[Any], list[np.ndarray]], None] | None = None,
    ) -> None:
        self.window, self.classify, self.features, self.feature_dim = window, classify, features, feature_dim
        self.each_chunk = each_chunk
        self.parts: list[list[dict[str, np.ndarray]]] = []
        self.written = 0  # grid frames seen

    def __call__(self, g: GridFrames, subjects: list[Any]) -> None:
        t = g.t
        if not len(t):
            return
        if t[0] != self.written or np.any(np.diff(t) != 1):
            raise RuntimeError(f"grid frames out of order: {t[0]} after {self.written}")
        if not self.parts:
            self.parts = [[] for _ in subjects]
        slot = t % self.window
        chunk_logits = []
        for k, subj in enumerate(subjects):
            part = {key: subj.out[key][slot].copy() for key in KEPT}
            part["track"] = subj.track[slot].copy()
            has = part["has_face"]
            logits = np.full((len(t), len(EMOTIONS)), np.nan, np.float32)
            crops = subj.out["faces"][slot[has]] if has.any() else None
            if crops is not None:
                logits[has] = self.classify(crops)
            part["logits"] = logits
            if k == 0 and self.features is not None:
                feats = np.zeros((len(t), self.feature_dim), np.float32)
                if crops is not None:
                    feats[has] = self.features(crops)
                part["features"] = feats
            self.parts[k].append(part)
            chunk_logits.append(logits)
        self.written += len(t)
        if self.each_chunk is not None:
            self.each_chunk(g, subjects, chunk_logits)

    def subjects(self, n: int, max_faces: int = 1) -> list[dict[str, np.ndarray]]:
        """Per subject (the main one first) its arrays over all ``n`` grid frames; frames no
        chunk covered (an audio-only file: all of them) have no face."""
        if self.written > n:
            raise RuntimeError(f"{self.written} grid frames tracked, the clip has {n}")
        parts = self.parts or [[] for _ in range(max(1, max_faces))]
        out = []
        for k, chunks in enumerate(parts):
            tail = _no_face(n - self.written, self.feature_dim if k == 0 and self.features else None)
            arrays = {key: np.concatenate([c[key] for c in [*chunks, tail]]) for key in tail}
            out.append(arrays)
        return out


def _no_face(n: int, feature_dim: int | None) -> dict[str, np.ndarray]:
    part = {
        "has_face": np.zeros(n, bool),
        "box": np.zeros((n, 4), np.float32),
        "landmarks": np.zeros((n, 5, 2), np.float32),
        "prob": np.zeros(n, np.float32),
        "track": np.full(n, -1, np.int32),
        "logits": np.full((n, len(EMOTIONS)), np.nan, np.float32),
    }
    if feature_dim is not None:
        part["features"] = np.zeros((n, feature_dim), np.float32)
    return part
