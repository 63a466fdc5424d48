"""Clips of T face frames for the video networks, sampled from the in-memory face frames of the
face caches (:class:`~avfer.data.frames.FrameStore`: aligned crops of the frames with a face).

Frames without a face are never sampled: a clip's T frames are drawn from its face frames only
(in time order), so a clip whose face leaves the frame for a while is seen without the gap, and
a clip with no face frame at all gets no clip (the training code gives it its documented
fallback, the train-label prior). Sampling modes (n = the clip's face frames):

=========  ======================================================================================
uniform    T evenly spaced frames, ``floor((k + o) * n / T)``; one random offset o per clip in
           training, ``o = (v + 0.5) / V`` for test view v of V
segment    TSN: the clip cut into T equal segments, one frame of each; random within every
           segment in training, as ``uniform`` at test time
dense      T consecutive frames ``stride`` apart (a window of ``(T - 1) * stride + 1``) at a random
           start in training, V evenly spaced starts at test time; clips shorter than the
           window fall back to ``uniform`` (frames repeated)
=========  ======================================================================================

Clips shorter than T repeat frames. The random draws come from torch's global RNG, which
:func:`avfer.train.fit` re-seeds every epoch, so a resumed run draws the same clips. Test-time
prediction averages the softmax of V views per clip (:func:`clip_views`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avfer.data.frames import FrameBatchSampler, FrameStore
from avfer.labels import EMOTIONS

SAMPLINGS = ("uniform", "segment", "dense")


def clip_positions(
    n: int,
    frames: int,
    mode: str = "segment",
    *,
    train: bool = False,
    view: int = 0,
    views: int = 1,
    stride: int = 1,
) -> np.ndarray:
    """Indices (into a clip's ``n`` face frames, ascending) of the ``frames`` frames of one clip:
    random when ``train`` (torch's global RNG), else test view ``view`` of ``views``."""
    if n < 1:
        raise ValueError("a clip needs at least one face frame")
    if mode not in SAMPLINGS:
        raise ValueError(f"sampling {mode!r} not in {SAMPLINGS}")
    k = np.arange(frames)
    span = (frames - 1) * stride + 1
    if mode == "dense" and n >= span:
        room = n - span
        if train:
            start = int(torch.randint(room + 1, (1,)))
        else:
            start = round(view * room / (views - 1)) if views > 1 else room // 2
        return start + k * stride
    if train and mode == "segment":
        offset = torch.rand(frames).numpy().astype(np.float64)
    elif train:
        offset = np.full(frames, float(torch.rand(1)))
    else:
        offset = np.full(frames, (view + 0.5) / views)
    return np.minimum(np.floor((k + offset) * n / frames).astype(np.int64), n - 1)


class ClipBatches(Dataset):
    """``dataset[list of item indices]`` → ``(uint8 clips [B, T, S, S, C], int64 targets [B])``.

    ``items`` are ``(clip row of store.clips, view)`` pairs; every clip must have a face frame.
    In ``train`` mode the frames of each clip are drawn at random (the view is ignored).
    """

    def __init__(
        self,
        store: FrameStore,
        items: np.ndarray,
        *,
        frames: int,
        mode: str = "segment",
        views: int = 1,
        stride: int = 1,
        train: bool = False,
    ) -> None:
        self.store, self.items = store, np.asarray(items, np.int64).reshape(-1, 2)
        self.frames, self.mode, self.views, self.stride, self.train = frames, mode, views, stride, train
        order = np.argsort(store.clip, kind="stable")
        counts = np.bincount(store.clip, minlength=len(store.clips))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        self.members = [order[s : s + c] for s, c in zip(starts, counts, strict=True)]
        lut = {e: i for i, e in enumerate(EMOTIONS)}
        self.targets = np.array([lut.get(x, -1) for x in store.clips["label"]], np.int64)
        empty = [int(c) for c in np.unique(self.items[:, 0]) if counts[c] == 0]
        if empty:
            raise ValueError(f"clips without a face frame cannot be sampled: {empty[:5]}")

    def __len__(self) -> int:
        return len(self.items)

    def frame_indices(self, item: int) -> np.ndarray:
        """Rows of ``store.images`` that make the clip of item ``item``."""
        clip, view = self.items[item]
        members = self.members[clip]
        pos = clip_positions(
            len(members),
            self.frames,
            self.mode,
            train=self.train,
            view=int(view),
            views=self.views,
            stride=self.stride,
        )
        return members[pos]

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.stack([self.frame_indices(i) for i in index])
        images = self.store.images[rows.reshape(-1)]
        clips = images.reshape(len(index), self.frames, *images.shape[1:])
        return torch.from_numpy(clips), torch.from_numpy(self.targets[self.items[index, 0]])


def clip_views(clips: np.ndarray, views: int) -> np.ndarray:
    """``(clip, view)`` items: every clip row of ``clips`` with views ``0 .. views - 1``."""
    clips = np.asarray(clips, np.int64)
    return np.stack([np.repeat(clips, views), np.tile(np.arange(views), len(clips))], axis=1)


def clip_loader(
    store: FrameStore,
    clips: np.ndarray,
    *,
    frames: int,
    mode: str,
    batch_size: int,
    train: bool = False,
    views: int = 1,
    stride: int = 1,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader of clips of the ``store`` rows ``clips``: shuffled random clips (``train``) or
    ``views`` test views of each clip in order (items of :func:`clip_views`)."""
    items = clip_views(clips, 1 if train else views)
    dataset = ClipBatches(store, items, frames=frames, mode=mode, views=views, stride=stride, train=train)
    sampler = FrameBatchSampler(
        np.arange(len(items)),
        batch_size,
        shuffle=train,
        drop_last=train and len(items) > batch_size,
        seed=seed,
    )
    return DataLoader(dataset, batch_size=None, sampler=sampler, pin_memory=pin_memory)
