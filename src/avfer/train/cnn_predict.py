"""Inference with a trained face CNN: clip-level predictions and the per-frame feature cache.

Clip probabilities are the mean or the median (renormalised) of the softmax of the clip's face
frames; a clip without any usable face frame gets the ``prior`` row (and counts in the metrics).
The feature cache (kind ``features``) holds, per clip, the features of the model's
``feature_layer`` (penultimate, fc6 or the flattened map) of every frame on the face cache's
25 fps grid: ``features`` float32 ``[T, D]`` (zero where there is no face) and ``mask`` bool
``[T]`` (the frame has a face and features), T equal to the face cache's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch

from avfer.data.frames import FrameStore, LazyFrames, batch_loader
from avfer.io.hdf5 import CLIPS, ClipWriter, h5_writer, open_cache, write_clip
from avfer.io.hdf5 import config_hash as hash_of
from avfer.metrics import log_prior_logits, predictions_frame
from avfer.models.face import FaceModel, load_face_model
from avfer.train.loop import predict, resolve_device

log = logging.getLogger(__name__)

AGGREGATES = ("mean", "median")


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def aggregate_frames(logits: np.ndarray, groups: np.ndarray, n_groups: int, how: str = "mean") -> np.ndarray:
    """Per-group class probabilities from frame logits: mean or median (renormalised to sum 1)
    of the frame softmax. Groups without frames get a row of zeros."""
    if how not in AGGREGATES:
        raise ValueError(f"aggregate {how!r} not in {AGGREGATES}")
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros((n_groups, logits.shape[1]))
    if how == "mean":
        np.add.at(out, groups, p)
        counts = np.bincount(groups, minlength=n_groups)[:, None]
        return np.divide(out, counts, out=out, where=counts > 0)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for members in np.split(order, bounds) if len(order) else []:
        med = np.median(p[members], axis=0)
        out[groups[members[0]]] = med / max(med.sum(), 1e-12)
    return out


def clip_logits(logits: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group mean of the frame logits (the clip logits late fusion on logits uses); groups
    without frames get zeros."""
    out = np.zeros((n_groups, logits.shape[1]))
    np.add.at(out, groups, logits)
    counts = np.bincount(groups, minlength=n_groups)[:, None]
    return np.divide(out, counts, out=out, where=counts > 0)


def frame_logits(model: FaceModel, store: FrameStore, batch_size: int = 256) -> np.ndarray:
    """Logits ``[F, C]`` of every face frame of ``store`` (eval mode)."""
    if not len(store.images):
        return np.zeros((0, model.backbone.num_classes), np.float32)
    loader = batch_loader(store.images, np.zeros(len(store.images), np.int64), batch_size=batch_size)
    logits, _ = predict(model, loader, _device(model))
    return logits


def predict_clips(
    model: FaceModel,
    face_paths: Sequence[str | os.PathLike[str]],
    *,
    aggregate: str = "mean",
    prior: np.ndarray,
    batch_size: int = 256,
    assignment: Mapping[str, tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Predictions (the shared ``predictions.csv`` frame) for every clip of the face caches (of
    ``assignment``), one cache in memory at a time. A clip without a usable face frame gets the
    ``prior`` row and its face-cache status (``no_face`` when it is ``ok`` but faceless)."""
    size, chans = model.spec["input_size"], model.spec["in_chans"]
    frames = []
    for path in face_paths:
        store = FrameStore.from_caches([path], size=size, chans=chans, assignment=assignment)
        logits = frame_logits(model, store, batch_size)
        probs = aggregate_frames(logits, store.clip, len(store.clips), aggregate)
        z = clip_logits(logits, store.clip, len(store.clips))
        faceless = store.clips["n_faces"].to_numpy() == 0
        probs[faceless] = prior
        z[faceless] = log_prior_logits(prior)
        status = store.clips["status"].where(~faceless | (store.clips["status"] != "ok"), "no_face")
        if faceless.any():
            log.info(
                "%s: %d clip(s) without a face get the fallback (train prior)", path, int(faceless.sum())
            )
        frames.append(
            predictions_frame(
                store.clips["clip_id"], store.clips["split"], store.clips["label"], probs, status, z
            )
        )
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def frame_features(model: FaceModel, images: np.ndarray | LazyFrames, batch_size: int = 256) -> np.ndarray:
    """Features ``[F, D]`` float32 (the model's ``feature_layer``) of uint8 face images (eval mode)."""
    model.eval()
    dev = _device(model)
    out = np.zeros((len(images), model.feature_dim), np.float32)
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size]).to(dev)
        out[i : i + batch_size] = model.forward_features(x).float().cpu().numpy()
    return out


def extract_features(
    model_path: str | Path,
    faces_path: str | Path,
    out_path: str | Path,
    *,
    batch_size: int = 256,
    device: str = "auto",
    threads: int | None = None,
    config_hash: str = "",
    features: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Write the feature cache of one face-cache shard (see the module docstring), clip by
    clip and, within a clip, :data:`BLOCK_FRAMES` grid frames at a time (memory does not grow
    with the shard or the clip).

    Every clip of the face cache gets a group with its split, label, status and error. A clip
    whose face cache group has no ``has_face`` (status ``failed``) gets no datasets. ``features``:
    the layer to read (:func:`avfer.config.feature_settings`; default: the one in ``model.pt``).
    """
    if threads:
        torch.set_num_threads(threads)
    model, _ = load_face_model(model_path, resolve_device(device), features)
    size, chans = model.spec["input_size"], model.spec["in_chans"]
    store = FrameStore.from_caches([faces_path], size=size, chans=chans)
    with open_cache(faces_path, "faces") as src:
        fps = float(src.attrs.get("fps", 25.0))
        errors = {cid: str(g.attrs.get("error", "")) for cid, g in src[CLIPS].items()}
    with h5_writer(
        out_path,
        "features",
        creator="extract_cnn_features",
        fps=fps,
        config_hash=config_hash or hash_of({**model.spec, "model": str(model_path)}),
        backbone=model.spec["backbone"],
        feature_dim=model.feature_dim,
        model=str(model_path),
        faces=str(faces_path),
    ) as f:
        _write_clips(f, model, store, errors, batch_size)
    store.images.reader.close()
    counts = {
        "clips": len(store.clips),
        "frames": int(store.clips["n_frames"].sum()),
        "faces": len(store.images),
    }
    log.info("%s: %s, feature_dim %d", out_path, counts, model.feature_dim)
    return counts


#: Face frames whose features are computed at a time (of several short clips, or a block of a long one).
BLOCK_FRAMES = 1024


def _write_clips(
    f: h5py.File, model: FaceModel, store: FrameStore, errors: dict[str, str], batch_size: int
) -> None:
    """Clips in order; the face frames of consecutive clips go through the model together in
    blocks of at most :data:`BLOCK_FRAMES` grid frames (a longer clip is cut into such blocks)."""
    order = np.argsort(store.clip, kind="stable")
    starts = np.searchsorted(store.clip[order], np.arange(len(store.clips) + 1))
    layout = {"features": ((model.feature_dim,), np.float32), "mask": ((), bool)}
    clips = list(store.clips.itertuples(index=False))
    # pieces: (clip index, first grid frame, end grid frame, face rows of the store inside)
    pieces: list[tuple[int, int, int, np.ndarray]] = []
    for i, rec in enumerate(clips):
        rows = order[starts[i] : starts[i + 1]]  # the clip's face frames, in grid order
        t = store.t[rows]
        for begin in range(0, rec.n_frames, BLOCK_FRAMES):
            end = min(begin + BLOCK_FRAMES, rec.n_frames)
            pieces.append((i, begin, end, rows[(t >= begin) & (t < end)]))
    writers: dict[int, ClipWriter] = {}
    block: list[tuple[int, int, int, np.ndarray]] = []

    def flush() -> None:
        rows = np.concatenate([p[3] for p in block])
        feats = frame_features(model, store.images.take(rows), batch_size) if len(rows) else None
        at = 0
        for i, begin, end, inside in block:
            rec = clips[i]
            if i not in writers:
                writers[i] = ClipWriter(f, rec.clip_id, layout, split=rec.split, label=rec.label)
            x = np.zeros((end - begin, model.feature_dim), np.float32)
            mask = np.zeros(end - begin, bool)
            if len(inside):
                x[store.t[inside] - begin] = feats[at : at + len(inside)]
                mask[store.t[inside] - begin] = True
                at += len(inside)
            writers[i].append({"features": x, "mask": mask})
            if end == rec.n_frames:
                writers.pop(i).close(rec.status, errors[rec.clip_id])
        block.clear()

    size = 0
    for piece in pieces:
        if size + piece[2] - piece[1] > BLOCK_FRAMES and block:
            flush()
            size = 0
        block.append(piece)
        size += piece[2] - piece[1]
    if block:
        flush()
    for rec in clips:  # clips without grid frames: failed (no datasets) or an empty grid
        if rec.n_frames == 0:
            attrs = {"split": rec.split, "label": rec.label, "status": rec.status}
            attrs["error"] = errors[rec.clip_id]
            empty = {"features": np.zeros((0, model.feature_dim), np.float32), "mask": np.zeros(0, bool)}
            write_clip(f, rec.clip_id, {} if rec.status == "failed" else empty, **attrs)
