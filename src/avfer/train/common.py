"""What every trainer shares besides the loop: class weights, resume checkpoints, the fallback
of clips a model cannot see, and the split a model selects its epoch on."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from avfer.io.hdf5 import config_hash
from avfer.labels import NUM_CLASSES

log = logging.getLogger(__name__)


def class_weights(targets: Sequence[int] | np.ndarray, enabled: bool = True) -> torch.Tensor | None:
    """Balanced loss weights (scikit-learn's ``compute_class_weight``: n / (classes x count)) over
    the classes present in ``targets``; 0 for absent classes; None when not ``enabled``."""
    if not enabled:
        return None
    y = np.asarray(targets, dtype=int)
    y = y[y >= 0]
    present = np.unique(y)
    w = np.zeros(NUM_CLASSES)
    if len(present):
        w[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.tensor(w, dtype=torch.float32)


def train_prior(targets: Sequence[int] | np.ndarray) -> np.ndarray:
    """The one fallback of every model for a clip it cannot see (no face, no audio, failed,
    no video): the class frequencies of the training clips (smoothed, summing to 1)."""
    y = np.asarray(targets, dtype=int)
    counts = np.bincount(y[y >= 0], minlength=NUM_CLASSES).astype(np.float64) + 1e-3
    return counts / counts.sum()


def file_stamps(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of each input: part of the resume hash, so new inputs start afresh."""
    return [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]


def resume_path(folder: str | Path, *parts: Any) -> Path:
    """``<folder>/resume-<hash>.pt`` for this config + inputs; stale resume files are removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"resume-{config_hash(parts)}.pt"
    for old in folder.glob("resume-*.pt"):
        if old != path:
            log.info("removing stale resume checkpoint %s", old)
            old.unlink()
    return path
