"""Clips of the feature and audio caches, indexed once and read one at a time.

:class:`ClipSource` reads only the attributes and dataset shapes of every clip (no arrays), so
its memory does not grow with the dataset; :meth:`ClipSource.read` joins one clip's inputs from
both caches (through a small cache of open files) exactly as :func:`avfer.data.sequences.load_clips`
describes. Training, standardisation statistics and prediction all stream clips through it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from avfer.io.hdf5 import CLIPS, CacheError, ReaderCache, open_cache
from avfer.labels import EMOTIONS

log = logging.getLogger(__name__)

FRAME_KEYS = ("video", "video_mask", "audio", "audio_mask")
# Which input arrays each cache kind provides, and the datasets they are read from.
SOURCES = {
    "features": {"video": "features", "video_mask": "mask"},
    "audio": {"audio": "lld", "audio_mask": "lld_mask", "functionals": "functionals"},
}
_AUDIO_KEYS = {"audio", "audio_mask", "functionals", "has_audio"}


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


@dataclass
class ClipRef:
    """Where one clip lives: its cache file per kind, its protocol split/label and status."""

    clip_id: str
    split: str
    label: str
    status: str
    length: int  # frames on the grid (that of the video when both caches are read)
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> int:
        """Class index of the label, -1 when unlabelled."""
        return EMOTIONS.index(self.label) if self.label else -1


def fit_length(arr: np.ndarray, length: int) -> np.ndarray:
    """``arr`` cut or zero-padded (invalid) to ``length`` frames (audio and video grids may differ
    by a frame)."""
    if len(arr) >= length:
        return arr[:length]
    pad = np.zeros((length - len(arr), *arr.shape[1:]), dtype=arr.dtype)
    return np.concatenate([arr, pad])


class ClipSource(Sequence[Clip]):
    """The clips (inputs ``keys``) of the feature and/or audio caches, joined by clip id, in the
    order of the first cache; ``source[i]`` reads clip ``i``. ``assignment`` (clip id → (split,
    label), a protocol run) replaces the caches' split and label; clips it does not list are
    left out. Raises :class:`CacheError` when a clip is in only one of the two caches."""

    def __init__(
        self,
        feature_paths: Sequence[str] = (),
        audio_paths: Sequence[str] = (),
        *,
        keys: Iterable[str],
        assignment: Mapping[str, tuple[str, str]] | None = None,
        max_open: int = 8,
    ) -> None:
        self.keys = set(keys)
        kinds = []
        if self.keys & {"video", "video_mask"}:
            kinds.append(("features", list(map(str, feature_paths))))
        if self.keys & _AUDIO_KEYS:
            kinds.append(("audio", list(map(str, audio_paths))))
        if not kinds:
            raise CacheError(f"no cache provides the inputs {sorted(self.keys)}")
        self.kinds = [k for k, _ in kinds]
        self.readers = {k: ReaderCache(k, max_open) for k in self.kinds}
        self.dims: dict[str, int] = {}
        index = [self._index(kind, paths) for kind, paths in kinds]
        first = index[0]
        for other in index[1:]:
            odd = set(first) ^ set(other)
            if odd:
                raise CacheError(f"clips {sorted(odd)[:5]} are in only one of the feature and audio caches")
        self.refs: list[ClipRef] = []
        for clip_id, (_path, split, label, status, _length) in first.items():
            if assignment is not None and clip_id not in assignment:
                continue
            if assignment is not None:
                split, label = assignment[clip_id]
            entries = [ix[clip_id] for ix in index]
            status = next((e[3] for e in entries if e[3] != "ok"), "ok")
            lengths = [e[4] for e in entries if e[4] is not None]
            paths = {kind: ix[clip_id][0] for kind, ix in zip(self.kinds, index, strict=True)}
            self.refs.append(ClipRef(clip_id, split, label, status, lengths[0] if lengths else 1, paths))

    def _index(self, kind: str, paths: Sequence[str]) -> dict[str, tuple]:
        """clip id → (path, split, label, status, frames or None) of every clip of ``paths``."""
        out: dict[str, tuple] = {}
        names = SOURCES[kind]
        for path in paths:
            with open_cache(path, kind) as f:
                for clip_id, g in f[CLIPS].items():
                    for key, ds in names.items():
                        if ds in g and key in ("video", "audio", "functionals") and key not in self.dims:
                            self.dims[key] = int(g[ds].shape[-1])
                    frames = names.get("video") or names.get("audio")
                    length = int(g[frames].shape[0]) if frames in g else None
                    attrs = g.attrs
                    out[clip_id] = (
                        path,
                        str(attrs["split"]),
                        str(attrs["label"]),
                        str(attrs["status"]),
                        length,
                    )
        return out

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> Clip:  # type: ignore[override]
        return self.read(i)

    def __iter__(self) -> Iterator[Clip]:
        return (self.read(i) for i in range(len(self)))

    def read(self, i: int, keys: Iterable[str] | None = None) -> Clip:
        """Clip ``i`` with the inputs ``keys`` (default: the source's): frame arrays of the two
        caches cut or padded (invalid) to the video length when they differ; a failed clip gets
        empty (all-invalid) inputs; features float32 without NaN/inf, masks bool."""
        ref = self.refs[i]
        keys = self.keys if keys is None else set(keys) & self.keys
        arrays: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        for kind in self.kinds:
            g = self.readers[kind](ref.paths[kind])[CLIPS][ref.clip_id]
            for key, ds in SOURCES[kind].items():
                if ds in g:
                    if key in ("video", "audio"):
                        lengths[key] = int(g[ds].shape[0])
                    if key in keys or (key == "audio_mask" and "audio" in keys):
                        arrays[key] = g[ds][()]
            if kind == "audio":
                arrays["has_audio"] = np.asarray(str(g.attrs["status"]) not in ("no_audio", "failed"))
        length = lengths.get("video", lengths.get("audio", 1))
        for key in keys - set(arrays):  # a failed clip: all-invalid inputs
            if key not in self.dims and not key.endswith("mask"):
                raise CacheError(f"{ref.clip_id}: no clip of the caches has {key!r} to take its size from")
            if key.endswith("mask"):
                arrays[key] = np.zeros(length, dtype=bool)
            elif key == "functionals":
                arrays[key] = np.zeros(self.dims[key], dtype=np.float32)
            else:
                arrays[key] = np.zeros((length, self.dims[key]), dtype=np.float32)
        if "video" in lengths and "audio" in lengths and lengths["audio"] != lengths["video"]:
            t_video, t_audio = lengths["video"], lengths["audio"]
            if abs(t_video - t_audio) > 2:
                log.warning("%s: %d video frames but %d audio frames", ref.clip_id, t_video, t_audio)
            for key in ("audio", "audio_mask"):
                if key in arrays:
                    arrays[key] = fit_length(arrays[key], t_video)
        arrays = {k: v for k, v in arrays.items() if k in keys}
        for k in ("video", "audio", "functionals"):
            if k in arrays:
                arrays[k] = np.nan_to_num(np.asarray(arrays[k], dtype=np.float32), posinf=0.0, neginf=0.0)
        for k in ("video_mask", "audio_mask", "has_audio"):
            if k in arrays:
                arrays[k] = np.asarray(arrays[k], dtype=bool)
        return Clip(ref.clip_id, ref.split, ref.label, arrays, ref.status)

    def visible(self, i: int) -> bool:
        """Whether a model has any valid input of clip ``i`` (reads its masks only)."""
        masks = self.read(i, ("video_mask", "audio_mask", "has_audio")).arrays
        return any(bool(np.any(m)) for m in masks.values()) if masks else True

    def close(self) -> None:
        """Close the open cache files."""
        for reader in self.readers.values():
            reader.close()
