"""Per-clip sequences from the feature and audio caches, standardised, batched for the
temporal, audio and early-fusion models.

A clip becomes a dict of arrays (see :class:`avfer.models.temporal.SequenceBatch` for the
keys): ``video``/``video_mask`` from the CNN feature cache, ``audio``/``audio_mask`` and
``functionals``/``has_audio`` from the audio cache, all on the same 25 fps frame grid.
Features are standardised with statistics of the training split only (valid frames only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from avfer.data.clip_source import FRAME_KEYS, Clip, ClipSource
from avfer.io.hdf5 import CacheError
from avfer.models.temporal import clip_windows

log = logging.getLogger(__name__)

CLIP_KEYS = ("functionals", "has_audio")


def load_clips(
    feature_paths: Sequence[str] = (),
    audio_paths: Sequence[str] = (),
    *,
    keys: Iterable[str],
    assignment: Mapping[str, tuple[str, str]] | None = None,
) -> list[Clip]:
    """Read the inputs ``keys`` of every clip from the feature and/or audio caches, joined by clip id.

    Frame arrays of the two caches are cut or padded (invalid) to the video length when they
    differ; a failed clip gets empty (all-invalid) inputs. Order: that of the first cache.
    ``assignment`` (clip id → (split, label), a protocol run) replaces the caches' split and
    label; clips it does not list are left out. Everything in memory: training streams the
    clips through :class:`ClipSource` instead.
    """
    source = ClipSource(feature_paths, audio_paths, keys=keys, assignment=assignment)
    try:
        return list(source)
    finally:
        source.close()


def visible(clip: Clip) -> bool:
    """Whether a model has any valid input of the clip (else it gets the fallback)."""
    masks = [clip.arrays[k] for k in ("video_mask", "audio_mask", "has_audio") if k in clip.arrays]
    return any(bool(np.any(m)) for m in masks) if masks else True


@dataclass
class Standardizer:
    """Per-dimension mean and standard deviation; transform clips to zero mean, unit variance."""

    mean: np.ndarray
    std: np.ndarray
    clip: float = 10.0

    @classmethod
    def fit(cls, arrays: Iterable[np.ndarray], masks: Iterable[np.ndarray]) -> Standardizer:
        """Statistics over the rows of ``arrays`` where ``masks`` is True (float64 sums)."""
        total = sq = None
        count = 0
        for arr, mask in zip(arrays, masks, strict=True):
            rows = np.asarray(arr, dtype=np.float64)[np.asarray(mask, dtype=bool)]
            if total is None:
                total, sq = np.zeros(arr.shape[-1]), np.zeros(arr.shape[-1])
            total += rows.sum(axis=0)
            sq += (rows**2).sum(axis=0)
            count += len(rows)
        if total is None or sq is None:
            raise CacheError("no valid training frames to compute standardisation statistics from")
        return cls.from_moments(total, sq, count)

    @classmethod
    def from_moments(cls, total: np.ndarray, sq: np.ndarray, count: int) -> Standardizer:
        """From the sums of the rows and of their squares over ``count`` rows."""
        if count == 0:
            raise CacheError("no valid training frames to compute standardisation statistics from")
        mean = total / count
        std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
        std[std < 1e-8] = 1.0
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def __call__(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Standardised ``x`` (clipped to ±``clip``), zeros where ``mask`` is False."""
        out = np.clip((x - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)
        if mask is not None:
            out[~np.asarray(mask, dtype=bool)] = 0.0
        return out

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors to store in a model checkpoint."""
        return {"mean": torch.from_numpy(self.mean), "std": torch.from_numpy(self.std)}

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor]) -> Standardizer:
        """Inverse of :meth:`state`."""
        return cls(state["mean"].numpy(), state["std"].numpy())


_MASK_OF = {"video": "video_mask", "audio": "audio_mask", "functionals": "has_audio"}


def fit_standardizers(clips: Iterable[Clip]) -> dict[str, Standardizer]:
    """One :class:`Standardizer` per feature input, from the training clips' valid frames
    (one pass; the clips may be streamed, e.g. from a :class:`ClipSource`)."""
    sums: dict[str, list] = {}
    seen = False
    for c in clips:
        if c.split != "train":
            continue
        seen = True
        for key, mask_key in _MASK_OF.items():
            if key not in c.arrays:
                continue
            rows = np.atleast_2d(np.asarray(c.arrays[key], np.float64))[np.atleast_1d(c.arrays[mask_key])]
            acc = sums.setdefault(key, [np.zeros(rows.shape[-1]), np.zeros(rows.shape[-1]), 0])
            acc[0] += rows.sum(axis=0)
            acc[1] += (rows**2).sum(axis=0)
            acc[2] += len(rows)
    if not seen:
        raise CacheError("no training clips in the caches")
    return {key: Standardizer.from_moments(*acc) for key, acc in sums.items()}


def standardize(clips: Sequence[Clip], norms: Mapping[str, Standardizer]) -> None:
    """Standardise every clip's feature inputs in place (invalid frames become zeros)."""
    for clip in clips:
        standardize_clip(clip, norms)


def standardize_clip(clip: Clip, norms: Mapping[str, Standardizer]) -> Clip:
    """Standardise one clip's feature inputs in place (invalid frames become zeros)."""
    for key, norm in norms.items():
        mask = clip.arrays[_MASK_OF[key]]
        clip.arrays[key] = norm(clip.arrays[key], mask if key != "functionals" else None)
        if key == "functionals" and not bool(mask):
            clip.arrays[key][:] = 0.0
    return clip


@dataclass(frozen=True)
class Windows:
    """How a dataset cuts clips into windows (those of the model, see :func:`clip_windows`)."""

    window: int
    stride: int
    frame_keys: tuple[str, ...]
    mask_keys: tuple[str, ...]


class SequenceDataset(Dataset):
    """``(inputs, target)`` per clip; ``inputs`` maps each key to a tensor (target -1 if unlabelled).

    ``clips``: in-memory clips, or a :class:`ClipSource` read one clip per item (then ``indices``
    picks its clips and ``norms`` standardise them as they are read). With ``windows`` a clip
    longer than the window comes as its windows (per-frame inputs ``(n, window, ...)``, clip
    inputs repeated, ``window_valid`` ``(n,)``), so a batch holds windows, never a padded copy of
    its longest clip.
    """

    def __init__(
        self,
        clips: Sequence[Clip] | ClipSource,
        indices: Sequence[int] | None = None,
        *,
        norms: Mapping[str, Standardizer] | None = None,
        windows: Windows | None = None,
    ) -> None:
        self.clips = clips
        self.indices = list(range(len(clips))) if indices is None else list(indices)
        self.norms, self.windows = norms, windows

    def __len__(self) -> int:
        return len(self.indices)

    def clip(self, i: int) -> Clip:
        """Item ``i`` as a (standardised) :class:`Clip`."""
        clip = self.clips[self.indices[i]]
        return standardize_clip(clip, self.norms) if self.norms else clip

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], int]:
        clip = self.clip(i)
        inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in clip.arrays.items()}
        w = self.windows
        if w is not None:
            inputs, valid = clip_windows(inputs, w.frame_keys, w.mask_keys, w.window, w.stride)
            inputs["window_valid"] = valid
        return inputs, clip.target


def collate_sequences(
    items: Sequence[tuple[Mapping[str, torch.Tensor], int]],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pad per-frame inputs to the longest clip (masks padded with False) → (SequenceBatch, targets).

    Windowed items (see :class:`SequenceDataset`) become one batch of windows (padded to the
    longest window) with ``window_clip`` (the item of each window) and ``window_valid``."""
    batch: dict[str, torch.Tensor] = {}
    windowed = "window_valid" in items[0][0]
    for key in items[0][0]:
        values = [inputs[key] for inputs, _ in items]
        if windowed:
            if key in FRAME_KEYS:
                longest = max(v.shape[1] for v in values)
                values = [
                    torch.nn.functional.pad(v, (0, 0) * (v.ndim - 2) + (0, longest - v.shape[1]))
                    for v in values
                ]
            batch[key] = torch.cat(values)
        elif key in FRAME_KEYS:
            batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True)
        else:
            batch[key] = torch.stack(values)
    if windowed:
        counts = torch.tensor([len(inputs["window_valid"]) for inputs, _ in items])
        batch["window_clip"] = torch.repeat_interleave(torch.arange(len(items)), counts)
    return batch, torch.tensor([t for _, t in items], dtype=torch.long)
