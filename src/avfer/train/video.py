"""Train one clip-level video network (``video_models`` config section) on the face caches.

:func:`train_video_model` loads the face frames once (:class:`~avfer.data.frames.FrameStore`, at
most ``store_frames`` per clip), trains on clips of T face frames (:mod:`avfer.data.clips`) with
the shared loop (:func:`avfer.train.common.train_model` → :func:`avfer.train.fit`: cosine schedule,
early stopping, a resumable ``resume-<hash>.pt`` beside ``model.pt`` after every epoch), selects
the epoch on the dev clips of the protocol run (val without one), and writes the shared outputs:
``model.pt``, ``predictions.csv``, ``metrics.json`` and the selection split's ``confusion.svg``.
A clip's probabilities are the mean softmax over ``test_clips`` views; clips without any face
frame get the one fallback of every model (train label frequencies), with their status.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avfer.data.clips import clip_loader
from avfer.data.frames import FrameStore
from avfer.datasets.splits import Assignment, selection_split
from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.metrics import (
    evaluate_predictions,
    log_prior_logits,
    plot_confusion,
    predictions_frame,
    write_metrics,
    write_predictions,
)
from avfer.models.video.classifier import VideoClassifier, save_video_model
from avfer.train.cnn import _interrupted, clip_score
from avfer.train.cnn_predict import aggregate_frames, clip_logits
from avfer.train.common import class_weights, file_stamps, resume_path, train_model, train_prior
from avfer.train.loop import predict, resolve_device, seed_everything

log = logging.getLogger(__name__)


def predict_video_clips(
    model: VideoClassifier,
    store: FrameStore,
    settings: Mapping[str, Any],
    prior: np.ndarray,
    *,
    device: torch.device,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and clip logits ``[clips, 7]`` of every clip of ``store``: the mean
    softmax and the mean logits over ``test_clips`` views; for clips without a face frame
    ``prior`` and its log (the fallback every model gives)."""
    probs = np.tile(prior, (len(store.clips), 1))
    logits = np.tile(log_prior_logits(prior), (len(store.clips), 1))
    seen = np.flatnonzero(store.clips["n_faces"].to_numpy() > 0)
    if len(seen):
        views = int(settings["test_clips"])
        loader = clip_loader(
            store,
            seen,
            frames=settings["frames"],
            mode=settings["sampling"],
            batch_size=batch_size,
            views=views,
            stride=settings["dense_stride"],
        )
        view_logits, _ = predict(model.to(device), loader, device)
        groups = np.repeat(np.arange(len(seen)), views)
        probs[seen] = aggregate_frames(view_logits, groups, len(seen), "mean")
        logits[seen] = clip_logits(view_logits, groups, len(seen))
    return probs, logits


def train_video_model(
    name: str,
    face_paths: Sequence[str | os.PathLike[str]],
    settings: Mapping[str, Any],
    *,
    model_path: str | Path,
    predictions_path: str | Path,
    metrics_path: str | Path,
    confusion_path: str | Path | None = None,
    seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    eval_batch_size: int = 16,
    assignment: Assignment | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train video model ``name`` with ``settings`` (from
    :func:`avfer.models.video.settings.video_settings`) on the clips of the face caches
    ``face_paths`` (splits and labels from ``assignment``, the protocol run, when given); write its
    outputs and return the metrics (``{}`` when stopped by ``stop_after``, leaving the resume
    checkpoint)."""
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    s, hp = dict(settings), dict(settings["train"])
    dev = resolve_device(device)
    store = FrameStore.from_caches(
        face_paths,
        size=s["input_size"],
        chans=s["in_chans"],
        max_frames=s["store_frames"],
        assignment=assignment,
    )
    clips = store.clips
    usable = (clips["label"] != "") & (clips["n_faces"] > 0)
    select_on = selection_split(clips[clips["label"] != ""]["split"].tolist())
    train_rows = np.flatnonzero(usable & (clips["split"] == "train"))
    sel_rows = np.flatnonzero(usable & (clips["split"] == select_on))
    if not len(train_rows) or not len(sel_rows):
        missing = "train" if not len(train_rows) else select_on
        raise AvferError(f"{name}: no {missing} clip with a face frame in {len(face_paths)} face cache(s)")
    model = VideoClassifier(
        name,
        frames=s["frames"],
        input_size=s["input_size"],
        in_chans=s["in_chans"],
        normalization=s["normalization"],
        augment=s["augment"],
        args=s["args"],
        pretrained_path=s["pretrained_path"],
    )
    common = {"frames": s["frames"], "mode": s["sampling"], "stride": s["dense_stride"]}
    train_loader = clip_loader(
        store,
        train_rows,
        batch_size=hp["batch_size"],
        train=True,
        seed=seed,
        pin_memory=dev.type == "cuda",
        **common,
    )
    views = int(s["test_clips"])
    val_loader = clip_loader(store, sel_rows, batch_size=eval_batch_size, views=views, **common)
    targets = np.array([EMOTIONS.index(x) for x in clips["label"].iloc[train_rows]])
    sel_targets = np.array([EMOTIONS.index(x) for x in clips["label"].iloc[sel_rows]])
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "%s: %d train clips, %d %s clips (x%d views), %d x %d px x %d ch, %s sampling, %.2fM parameters",
        name, len(train_rows), len(sel_rows), select_on, views, s["frames"], s["input_size"],
        s["in_chans"], s["sampling"], n_params / 1e6,
    )  # fmt: skip
    inputs = [*face_paths, *([s["pretrained_path"]] if s["pretrained_path"] else [])]
    protocol = sorted(zip(clips["clip_id"], clips["split"], clips["label"], strict=True))
    ckpt = resume_path(Path(model_path).parent, name, s, seed, file_stamps(inputs), protocol)
    result = train_model(
        model,
        train_loader,
        val_loader,
        hp,
        score=clip_score(hp["score"], np.repeat(np.arange(len(sel_targets)), views), sel_targets),
        weights=class_weights(targets, hp["balanced_loss"]),
        device=dev,
        seed=seed,
        checkpoint=ckpt,
        stop_after=stop_after,
    )
    if _interrupted(result, hp, stop_after):
        return {}  # interrupted on purpose (tests): leave the resume checkpoint, write nothing
    model.load_state_dict(result.best_state)
    prior = train_prior(targets)
    probs, logits = predict_video_clips(model, store, s, prior, device=dev, batch_size=eval_batch_size)
    faceless = clips["n_faces"].to_numpy() == 0
    status = clips["status"].where(~faceless | (clips["status"] != "ok"), "no_face")
    df = predictions_frame(
        clips["clip_id"].tolist(), clips["split"].tolist(), clips["label"].tolist(), probs, status.tolist(),
        logits=logits,
    )  # fmt: skip
    metrics = evaluate_predictions(df)
    write_predictions(predictions_path, df)
    write_metrics(metrics_path, metrics)
    if confusion_path is not None:
        split = select_on if select_on in metrics else "train"
        m = metrics[split]
        title = f"{name} {split}: acc {m['accuracy']:.2f}, UAR {m['uar']:.2f}"
        plot_confusion(m["confusion"], confusion_path, title)
    extra = {
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "selected_on": select_on,
        "history": result.history,
        "prior": prior.tolist(),
        "settings": {k: v for k, v in s.items() if k != "train"},
        "train": hp,
        "seed": seed,
    }
    save_video_model(model_path, model, result.best_state, extra)
    ckpt.unlink(missing_ok=True)
    for split, m in metrics.items():
        log.info("%s %s: acc %.3f uar %.3f (n=%d)", name, split, m["accuracy"], m["uar"], m["n"])
    return metrics
