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
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from avfer.io.hdf5 import CacheError, iter_clips
from avfer.labels import EMOTIONS

log = logging.getLogger(__name__)

FRAME_KEYS = ("video", "video_mask", "audio", "audio_mask")
CLIP_KEYS = ("functionals", "has_audio")
# Which input arrays each source provides, and the cache datasets they are read from.
_VIDEO = {"video": "features", "video_mask": "mask"}
_AUDIO = {"audio": "lld", "audio_mask": "lld_mask", "functionals": "functionals"}


@dataclass
class Clip:
    """One clip's inputs (numpy arrays keyed like a ``SequenceBatch``) and its metadata."""

    clip_id: str
    split: str
    label: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    status: str = "ok"  # of its caches: the first that is not ok (no_face, no_audio, failed, ...)

    @property
    def target(self) -> int:
        """Class index of the label, -1 when unlabelled."""
        return EMOTIONS.index(self.label) if self.label else -1


def _read(paths: Iterable[str], kind: str, names: Mapping[str, str]) -> dict[str, Clip]:
    out: dict[str, Clip] = {}
    for rec in iter_clips(paths, kind, datasets=list(names.values())):
        arrays = {key: rec.data[ds] for key, ds in names.items() if ds in rec.data}
        if kind == "audio":
            arrays["has_audio"] = np.asarray(rec.status not in ("no_audio", "failed"))
        out[rec.clip_id] = Clip(rec.clip_id, rec.split, rec.label, arrays, str(rec.status))
    return out


def _fit_length(arr: np.ndarray, length: int) -> np.ndarray:
    if len(arr) >= length:
        return arr[:length]
    pad = np.zeros((length - len(arr), *arr.shape[1:]), dtype=arr.dtype)
    return np.concatenate([arr, pad])


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
    label; clips it does not list are left out.
    """
    keys = set(keys)
    sources = []
    if keys & {"video", "video_mask"}:
        sources.append(_read(feature_paths, "features", _VIDEO))
    if keys & {"audio", "audio_mask", "functionals", "has_audio"}:
        sources.append(_read(audio_paths, "audio", _AUDIO))
    if not sources:
        raise CacheError(f"no cache provides the inputs {sorted(keys)}")
    first = sources[0]
    for other in sources[1:]:
        odd = set(first) ^ set(other)
        if odd:
            raise CacheError(f"clips {sorted(odd)[:5]} are in only one of the feature and audio caches")
    dims = {
        k: arr.shape[-1]
        for source in sources
        for clip in source.values()
        for k, arr in clip.arrays.items()
        if k in ("video", "audio", "functionals")
    }
    clips = []
    for clip_id, clip in first.items():
        if assignment is not None and clip_id not in assignment:
            continue
        split, label = assignment[clip_id] if assignment is not None else (clip.split, clip.label)
        status = next((s[clip_id].status for s in sources if s[clip_id].status != "ok"), "ok")
        arrays: dict[str, np.ndarray] = {}
        for source in sources:
            arrays.update(source[clip_id].arrays)
        length = next((len(arrays[k]) for k in ("video", "audio") if k in arrays), 1)
        for key in keys - set(arrays):  # a failed clip: all-invalid inputs
            if key not in dims and not key.endswith("mask"):
                raise CacheError(f"{clip_id}: no clip of the caches has {key!r} to take its size from")
            if key.endswith("mask"):
                arrays[key] = np.zeros(length, dtype=bool)
            elif key == "functionals":
                arrays[key] = np.zeros(dims[key], dtype=np.float32)
            else:
                arrays[key] = np.zeros((length, dims[key]), dtype=np.float32)
        if "video" in arrays and "audio" in arrays and len(arrays["audio"]) != len(arrays["video"]):
            t_video, t_audio = len(arrays["video"]), len(arrays["audio"])
            if abs(t_video - t_audio) > 2:
                log.warning("%s: %d video frames but %d audio frames", clip_id, t_video, t_audio)
            arrays["audio"] = _fit_length(arrays["audio"], t_video)
            arrays["audio_mask"] = _fit_length(arrays["audio_mask"], t_video)
        arrays = {k: v for k, v in arrays.items() if k in keys}
        for k in ("video", "audio", "functionals"):
            if k in arrays:
                arrays[k] = np.nan_to_num(np.asarray(arrays[k], dtype=np.float32), posinf=0.0, neginf=0.0)
        for k in ("video_mask", "audio_mask", "has_audio"):
            if k in arrays:
                arrays[k] = np.asarray(arrays[k], dtype=bool)
        clips.append(Clip(clip_id, split, label, arrays, status))
    return clips


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
        if total is None or count == 0:
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


def fit_standardizers(clips: Sequence[Clip]) -> dict[str, Standardizer]:
    """One :class:`Standardizer` per feature input, from the training clips' valid frames."""
    train = [c for c in clips if c.split == "train"]
    if not train:
        raise CacheError("no training clips in the caches")
    out = {}
    for key, mask_key in _MASK_OF.items():
        if key in train[0].arrays:
            masks = [np.atleast_1d(c.arrays[mask_key]) for c in train]
            arrays = [np.atleast_2d(c.arrays[key]) for c in train]
            out[key] = Standardizer.fit(arrays, masks)
    return out


def standardize(clips: Sequence[Clip], norms: Mapping[str, Standardizer]) -> None:
    """Standardise every clip's feature inputs in place (invalid frames become zeros)."""
    for clip in clips:
        for key, norm in norms.items():
            mask = clip.arrays[_MASK_OF[key]]
            clip.arrays[key] = norm(clip.arrays[key], mask if key != "functionals" else None)
            if key == "functionals" and not bool(mask):
                clip.arrays[key][:] = 0.0


class SequenceDataset(Dataset):
    """``(inputs, target)`` per clip; ``inputs`` maps each key to a tensor (target -1 if unlabelled)."""

    def __init__(self, clips: Sequence[Clip]) -> None:
        self.clips = list(clips)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], int]:
        clip = self.clips[i]
        return {k: torch.from_numpy(np.asarray(v)) for k, v in clip.arrays.items()}, clip.target


def collate_sequences(
    items: Sequence[tuple[Mapping[str, torch.Tensor], int]],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pad per-frame inputs to the longest clip (masks padded with False) → (SequenceBatch, targets)."""
    batch: dict[str, torch.Tensor] = {}
    for key in items[0][0]:
        values = [inputs[key] for inputs, _ in items]
        if key in FRAME_KEYS:
            batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True)
        else:
            batch[key] = torch.stack(values)
    return batch, torch.tensor([t for _, t in items], dtype=torch.long)
