"""The tracked faces of a video as ``avfer predict`` keeps them: per grid frame and subject the
box, landmarks, detection probability, track id and the face model's logits, plus what the
bundle's clip models need of the main subject (per frame: each CNN's features, the logits of
its other face CNNs), collected chunk by chunk from the face stage's ring of crops
(:func:`avfer.faces.track_clip` with ``window``). The crops themselves are never kept in memory
(a bundle with a video network spools the main subject's to a temporary face cache on disk,
:class:`avfer.predict.spool.FaceSpool`), so memory grows by about 100 bytes a frame (2 kB per
feature extractor), not by the 37 kB of a 112 px crop: a clip of any length fits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from avfer.labels import EMOTIONS
from avfer.video import GridFrames

KEPT = ("has_face", "box", "landmarks", "prob")  # per-frame face datasets kept (not "faces")
Classify = Callable[[np.ndarray], np.ndarray]  # uint8 [n, h, w, 3] crops -> float32 [n, D]
OnChunk = Callable[[GridFrames, list[Any]], None]


class TrackLog:
    """``on_chunk`` of :func:`avfer.faces.track_clip` (ring of ``window`` frames): classifies
    each chunk's crops with ``classify`` (logits ``[n, 7]``), runs each of ``main`` (key →
    (function, output width): ``[n, D]`` per crop) on the main subject's and keeps only those and
    the small per-frame arrays. ``spool`` (optional) also gets every chunk (the main subject's
    crops to disk); ``each_chunk(g, subjects, logits)`` (optional) sees every chunk with its
    logits (drawing, progress)."""

    def __init__(
        self,
        window: int,
        classify: Classify,
        main: dict[str, tuple[Classify, int]] | None = None,
        each_chunk: Callable[[GridFrames, list[Any], list[np.ndarray]], None] | None = None,
        spool: OnChunk | None = None,
    ) -> None:
        self.window, self.classify, self.main = window, classify, dict(main or {})
        self.each_chunk, self.spool = each_chunk, spool
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
            for key, (run, dim) in self.main.items() if k == 0 else ():
                part[key] = np.zeros((len(t), dim), np.float32)
                if crops is not None:
                    part[key][has] = run(crops)
            self.parts[k].append(part)
            chunk_logits.append(logits)
        if self.spool is not None:
            self.spool(g, subjects)
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
            tail = _no_face(
                n - self.written, {key: dim for key, (_, dim) in self.main.items()} if k == 0 else {}
            )
            arrays = {key: np.concatenate([c[key] for c in [*chunks, tail]]) for key in tail}
            out.append(arrays)
        return out


def _no_face(n: int, main: dict[str, int]) -> dict[str, np.ndarray]:
    part = {
        "has_face": np.zeros(n, bool),
        "box": np.zeros((n, 4), np.float32),
        "landmarks": np.zeros((n, 5, 2), np.float32),
        "prob": np.zeros(n, np.float32),
        "track": np.full(n, -1, np.int32),
        "logits": np.full((n, len(EMOTIONS)), np.nan, np.float32),
    }
    for key, dim in main.items():
        part[key] = np.zeros((n, dim), np.float32)
    return part
