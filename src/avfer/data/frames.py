"""The face-frame data path: face frames read lazily from the HDF5 face caches.

:meth:`FrameStore.from_caches` reads only each clip's ``has_face`` flags and keeps an index of
the face frames (clip and grid frame of each, 16 bytes a frame); the pixels are read when a
batch asks for them (:class:`LazyFrames`: per clip one HDF5 read of the batch's frames, fitted
to the model's size and channels by :func:`fit_images`), through a small cache of open files.
Memory therefore does not grow with the dataset: an epoch that draws at most
``frames_per_clip`` frames of each clip (:class:`FrameBatchSampler`) reads only those. Face
caches written by the face stage chunk ``faces`` one frame a chunk, so a random frame costs one
frame's decompression. Batches are served through a ``DataLoader(..., batch_size=None,
sampler=...)`` by :class:`ImageBatches`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from avfer.data.transforms import fit_images
from avfer.io.hdf5 import CLIPS, ReaderCache, open_cache
from avfer.labels import EMOTIONS

log = logging.getLogger(__name__)

CLIP_COLUMNS = ["clip_id", "split", "label", "status", "n_frames", "n_faces"]


class LazyFrames:
    """Face frames ``[F, size, size, chans]`` uint8 of many clips, read on indexing.

    ``sources[c]`` is ``(cache path, clip id)`` of clip ``c``; frame ``i`` is grid frame
    ``t[i]`` of clip ``clip[i]``. ``frames[idx]`` (integer or boolean index) reads the frames
    in that order; :meth:`take` is a lazy subset.
    """

    def __init__(
        self,
        sources: Sequence[tuple[str, str]],
        clip: np.ndarray,
        t: np.ndarray,
        size: int,
        chans: int,
        reader: ReaderCache | None = None,
    ) -> None:
        self.sources = list(sources)
        self.clip, self.t = np.asarray(clip, np.int64), np.asarray(t, np.int64)
        self.size, self.chans = int(size), int(chans)
        self.reader = reader or ReaderCache("faces")
        self.dtype = np.dtype(np.uint8)
        self._datasets: dict[int, h5py.Dataset] = {}  # open `faces` datasets by clip (lookups are slow)
        self._pid = os.getpid()

    def _dataset(self, c: int) -> h5py.Dataset:
        """The ``faces`` dataset of clip ``c`` (handle kept while its file stays open)."""
        if self._pid != os.getpid():  # a forked worker: the parent's handles are not ours
            self._datasets, self._pid = {}, os.getpid()
        ds = self._datasets.get(c)
        if ds is None or not ds.id.valid:
            if len(self._datasets) >= 256:
                self._datasets.clear()
            path, clip_id = self.sources[c]
            ds = self._datasets[c] = self.reader(path)[CLIPS][clip_id]["faces"]
        return ds

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.clip), self.size, self.size, self.chans)

    @property
    def nbytes(self) -> int:
        """Bytes the frames would take in memory (nothing is held)."""
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.clip)

    def take(self, index: np.ndarray) -> LazyFrames:
        """The frames ``index`` (still lazy)."""
        idx = self._index(index)
        out = LazyFrames(self.sources, self.clip[idx], self.t[idx], self.size, self.chans, self.reader)
        out._datasets = self._datasets
        return out

    def _index(self, index: np.ndarray | Sequence[int] | slice) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(len(self))[index]
        idx = np.asarray(index)
        return np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64).reshape(-1)

    def __getitem__(self, index: np.ndarray | Sequence[int] | slice) -> np.ndarray:
        idx = self._index(index)
        out = np.empty((len(idx), self.size, self.size, self.chans), np.uint8)
        order = np.lexsort((self.t[idx], self.clip[idx]))
        clips = self.clip[idx][order]
        bounds = np.flatnonzero(np.diff(clips)) + 1
        rows_of, raw = [], []
        for rows in np.split(order, bounds) if len(order) else []:
            ds = self._dataset(int(self.clip[idx[rows[0]]]))
            t = self.t[idx[rows]]
            uniq, inverse = np.unique(t, return_inverse=True)
            consecutive = uniq[-1] - uniq[0] + 1 == len(uniq)  # one slice instead of a point list
            faces = ds[int(uniq[0]) : int(uniq[-1]) + 1] if consecutive else ds[uniq]
            rows_of.append(rows)
            raw.append(faces[inverse])
        if raw and len({r.shape[1:] for r in raw}) == 1:  # one resize for the whole batch
            out[np.concatenate(rows_of)] = fit_images(np.concatenate(raw), self.size, self.chans).numpy()
        else:
            for rows, faces in zip(rows_of, raw, strict=True):
                out[rows] = fit_images(faces, self.size, self.chans).numpy()
        return out


@dataclass
class FrameStore:
    """Face frames of many clips: ``images`` (:class:`LazyFrames`, face frames only),
    ``clip`` (row of ``clips`` per frame), ``t`` (frame index on the clip's 25 fps grid) and
    ``clips`` (one row per clip, cache order: :data:`CLIP_COLUMNS`)."""

    images: LazyFrames
    clip: np.ndarray
    t: np.ndarray
    clips: pd.DataFrame

    @property
    def targets(self) -> np.ndarray:
        """Canonical label index per frame (-1 for unlabelled clips)."""
        lut = np.array([EMOTIONS.index(x) if x else -1 for x in self.clips["label"]], np.int64)
        return lut[self.clip] if len(lut) else np.zeros(0, np.int64)

    @classmethod
    def from_caches(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        *,
        size: int,
        chans: int,
        splits: Sequence[str] | None = None,
        labelled_only: bool = False,
        assignment: Mapping[str, tuple[str, str]] | None = None,
        max_frames: int | None = None,
        reader: ReaderCache | None = None,
    ) -> FrameStore:
        """Index the face frames of every clip (of ``splits``) of the face caches ``paths``.

        ``assignment`` (clip id → (split, label), a protocol run) replaces the caches' own split
        and label; clips it does not list are skipped. Clips whose status is not ``ok`` or that
        have no face frame are listed in ``clips`` with ``n_faces = 0`` and contribute no frames.
        ``max_frames`` keeps at most that many evenly spaced face frames per clip (memory bounded
        by clips x ``max_frames`` frames).
        """
        clip_of: list[np.ndarray] = []
        t_of: list[np.ndarray] = []
        rows: list[dict] = []
        sources: list[tuple[str, str]] = []
        for path in paths:
            with open_cache(path, "faces") as f:
                for clip_id, g in f[CLIPS].items():
                    if assignment is not None and clip_id not in assignment:
                        continue
                    split, label = (
                        assignment[clip_id]
                        if assignment is not None
                        else (
                            str(g.attrs["split"]),
                            str(g.attrs["label"]),
                        )
                    )
                    status = str(g.attrs["status"])
                    if (splits is not None and split not in splits) or (labelled_only and not label):
                        continue
                    has_face = g["has_face"][()].astype(bool) if "has_face" in g else np.zeros(0, bool)
                    usable = status == "ok" and "faces" in g and has_face.any()
                    idx = np.flatnonzero(has_face) if usable else np.zeros(0, np.int64)
                    if max_frames is not None and len(idx) > max_frames:
                        idx = idx[np.linspace(0, len(idx) - 1, max_frames).round().astype(int)]
                    if len(idx):
                        clip_of.append(np.full(len(idx), len(rows), np.int64))
                        t_of.append(idx.astype(np.int64))
                    rows.append(
                        {
                            "clip_id": clip_id,
                            "split": split,
                            "label": label,
                            "status": status,
                            "n_frames": len(has_face),
                            "n_faces": len(idx),
                        }
                    )
                    sources.append((str(path), clip_id))
        clip = np.concatenate(clip_of) if clip_of else np.zeros(0, np.int64)
        t = np.concatenate(t_of) if t_of else np.zeros(0, np.int64)
        images = LazyFrames(sources, clip, t, size, chans, reader)
        log.info(
            "indexed %d face frames of %d clips (%.0f MB if held in memory; read per batch)",
            len(images),
            len(rows),
            images.nbytes / 1e6,
        )
        return cls(images, clip, t, pd.DataFrame(rows, columns=CLIP_COLUMNS))


class ImageBatches(Dataset):
    """``dataset[list_of_indices]`` → ``(uint8 images [B, S, S, C], targets)``: int64 labels
    ``[B]``, or float32 label distributions ``[B, classes]`` when ``targets`` is 2-D (soft
    labels, e.g. FER+ votes); ``images`` an in-memory array or :class:`LazyFrames`."""

    def __init__(self, images: np.ndarray | LazyFrames, targets: np.ndarray) -> None:
        targets = np.asarray(targets)
        self.images = images
        self.targets = targets.astype(np.float32) if targets.ndim == 2 else targets.astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(np.asarray(index))  # sorted reads are faster (memory-mapped or HDF5)
        return torch.from_numpy(np.ascontiguousarray(self.images[idx])), torch.from_numpy(self.targets[idx])


class FrameBatchSampler(Sampler[list[int]]):
    """Batches of frame indices. Per epoch: at most ``frames_per_clip`` random frames of each
    group (clip), shuffled (``shuffle``), or every frame in order. ``generator`` is re-seeded
    every epoch by :func:`avfer.train.fit`, so resumed runs draw the same batches."""

    def __init__(
        self,
        groups: np.ndarray,
        batch_size: int,
        *,
        frames_per_clip: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        self.groups = np.asarray(groups)
        self.batch_size, self.frames_per_clip = int(batch_size), frames_per_clip
        self.shuffle, self.drop_last = shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self._members = _group_members(self.groups) if frames_per_clip is not None else []

    def _epoch_indices(self) -> np.ndarray:
        k = self.frames_per_clip
        if k is None:
            idx = np.arange(len(self.groups))
        else:
            picked = []
            for members in self._members:
                if len(members) > k:
                    perm = torch.randperm(len(members), generator=self.generator).numpy()
                    members = np.sort(members[perm[:k]])
                picked.append(members)
            idx = np.concatenate(picked) if picked else np.zeros(0, np.int64)
        if self.shuffle:
            idx = idx[torch.randperm(len(idx), generator=self.generator).numpy()]
        return idx

    def _epoch_size(self) -> int:
        k = self.frames_per_clip
        return len(self.groups) if k is None else sum(min(len(m), k) for m in self._members)

    def __len__(self) -> int:
        n = self._epoch_size()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        idx = self._epoch_indices()
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        for i in range(0, stop, self.batch_size):
            yield idx[i : i + self.batch_size].tolist()


def batch_loader(
    images: np.ndarray | LazyFrames,
    targets: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    batch_size: int,
    frames_per_clip: int | None = None,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A ``DataLoader`` over uint8 images (in memory, or :class:`LazyFrames` read per batch)."""
    groups = np.arange(len(images)) if groups is None else groups
    sampler = FrameBatchSampler(
        groups, batch_size, frames_per_clip=frames_per_clip, shuffle=shuffle, drop_last=drop_last, seed=seed
    )
    return DataLoader(ImageBatches(images, targets), batch_size=None, sampler=sampler, pin_memory=pin_memory)


def _group_members(groups: np.ndarray) -> list[np.ndarray]:
    """Indices of each group's members (groups in sorted order, members in index order)."""
    order = np.argsort(groups, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(groups[order])) + 1) if len(order) else []


def even_subsample(groups: np.ndarray, per_group: int | None) -> np.ndarray:
    """Indices of at most ``per_group`` evenly spaced members of each group (deterministic)."""
    if per_group is None:
        return np.arange(len(groups))
    keep = []
    for members in _group_members(np.asarray(groups)):
        if len(members) > per_group:
            members = members[np.linspace(0, len(members) - 1, per_group).round().astype(int)]
        keep.append(members)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
