"""Sequences of face crops on the 25 fps grid, for models that train the CNN with the sequence
model (:mod:`avfer.models.end_to_end`).

A training sample is one window of ``window`` consecutive grid frames of a clip, at a random start
among those whose window holds a face (one per clip and epoch; a clip not longer than the window
is one sample of its own length); evaluation takes whole clips. A sample holds the uint8 crops of
the window's face frames only (read lazily from the face caches through
:class:`~avfer.data.frames.FrameStore`), their positions, and for early fusion the clip's
standardised LLDs of the same frames. :func:`collate_face_sequences` pads a batch to its longest
sample; frames without a face are invalid (``video_mask`` False) as in the feature cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avfer.data.clip_source import ClipSource, fit_length
from avfer.data.frames import FrameStore
from avfer.data.sequences import Standardizer
from avfer.labels import EMOTIONS


class FaceSequences(Dataset):
    """Clips ``rows`` (rows of ``store.clips``) as face sequences; ``train``: a random window per
    clip (``window`` frames, None = whole clips), else whole clips. ``audio`` (a
    :class:`ClipSource` over the audio caches with ``audio``/``audio_mask``, and its
    :class:`Standardizer`) adds each frame's LLDs."""

    def __init__(
        self,
        store: FrameStore,
        rows: Sequence[int],
        *,
        window: int | None = None,
        train: bool = False,
        audio: tuple[ClipSource, Standardizer] | None = None,
    ) -> None:
        self.store, self.rows = store, np.asarray(rows, np.int64)
        self.window, self.train, self.audio = window, train, audio
        order = np.lexsort((store.t, store.clip))
        starts = np.searchsorted(store.clip[order], np.arange(len(store.clips) + 1))
        self._faces = [order[starts[c] : starts[c + 1]] for c in range(len(store.clips))]  # grid order
        self._n = store.clips["n_frames"].to_numpy()
        label = store.clips["label"].tolist()
        self._target = np.array([EMOTIONS.index(x) if x else -1 for x in label], np.int64)
        if audio is not None:
            index = {r.clip_id: i for i, r in enumerate(audio[0].refs)}
            self._audio_of = [index.get(c) for c in store.clips["clip_id"]]

    def __len__(self) -> int:
        return len(self.rows)

    def _span(self, c: int) -> tuple[int, int]:
        """The grid frames ``[start, end)`` of clip ``c``'s sample."""
        n, w = int(self._n[c]), self.window
        if not self.train or w is None or n <= w:
            return 0, n
        has = np.zeros(n + 1, np.int64)
        has[self.store.t[self._faces[c]] + 1] = 1
        count = np.cumsum(has)
        ok = np.flatnonzero(count[w:] - count[: n - w + 1] > 0)  # starts whose window has a face
        start = int(ok[int(torch.randint(len(ok), ()))]) if len(ok) else 0
        return start, start + w

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = int(self.rows[i])
        start, end = self._span(c)
        rows = self._faces[c]
        t = self.store.t[rows]
        inside = rows[(t >= start) & (t < end)]
        out: dict[str, Any] = {
            "faces": self.store.images[inside] if len(inside) else None,
            "pos": self.store.t[inside] - start,
            "length": end - start,
            "target": int(self._target[c]),
        }
        if self.audio is not None:
            source, norm = self.audio
            k = self._audio_of[c]
            length = int(self._n[c])
            if k is None:
                lld = np.zeros((length, source.dims["audio"]), np.float32)
                mask = np.zeros(length, bool)
            else:
                arrays = source.read(k, ("audio", "audio_mask")).arrays
                lld, mask = fit_length(arrays["audio"], length), fit_length(arrays["audio_mask"], length)
            mask = mask[start:end]
            out["audio"], out["audio_mask"] = norm(lld[start:end], mask), mask
        return out


def collate_face_sequences(items: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``(inputs, targets)``: ``faces`` [F, H, W, C] uint8, ``face_index`` [F] (``b * T + t``),
    ``video_mask`` [B, T] and, with audio, ``audio`` [B, T, D] / ``audio_mask`` [B, T]; T the
    longest sample (at least 1 frame)."""
    size = max(1, max(it["length"] for it in items))
    mask = torch.zeros((len(items), size), dtype=torch.bool)
    index, faces = [], []
    for b, it in enumerate(items):
        pos = torch.from_numpy(np.asarray(it["pos"], np.int64))
        mask[b, pos] = True
        index.append(b * size + pos)
        if it["faces"] is not None:
            faces.append(torch.from_numpy(np.ascontiguousarray(it["faces"])))
    inputs: dict[str, torch.Tensor] = {
        "faces": torch.cat(faces) if faces else torch.zeros((0, 1, 1, 1), dtype=torch.uint8),
        "face_index": torch.cat(index),
        "video_mask": mask,
    }
    if "audio" in items[0]:
        dim = items[0]["audio"].shape[-1]
        audio = torch.zeros((len(items), size, dim))
        audio_mask = torch.zeros((len(items), size), dtype=torch.bool)
        for b, it in enumerate(items):
            n = len(it["audio"])
            audio[b, :n] = torch.from_numpy(it["audio"])
            audio_mask[b, :n] = torch.from_numpy(it["audio_mask"])
        inputs["audio"], inputs["audio_mask"] = audio, audio_mask
    return inputs, torch.tensor([it["target"] for it in items], dtype=torch.int64)
