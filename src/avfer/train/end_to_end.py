"""Train an end-to-end model (``e2e_<sequence model>``): the face CNN and the sequence model
together on face sequences of the face caches (:mod:`avfer.models.end_to_end`).

Starts from the fine-tuned CNN and the sequence model trained on its cached features, trains
with the shared loop (:func:`avfer.train.fit`: the config's schedule, ``head_epochs`` = the
sequence model alone first, early stopping on the dev score — val without a dev split — and a
resumable checkpoint after every epoch) on one random window of the sequence model's ``window``
frames per clip and epoch (one loss per sequence), and scores whole clips as the two-stage model
does. Writes ``model.pt``, ``predictions.csv`` (with logits) and ``metrics.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from avfer.config import result_settings
from avfer.data.clip_source import ClipSource
from avfer.data.face_sequences import FaceSequences, collate_face_sequences
from avfer.data.frames import FrameStore
from avfer.data.sequences import Standardizer
from avfer.datasets.splits import Assignment, selection_split
from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.metrics import (
    compute_metrics,
    evaluate_predictions,
    log_prior_logits,
    predictions_frame,
    write_metrics,
    write_predictions,
)
from avfer.models.end_to_end import EndToEnd, from_stages, save_end_to_end
from avfer.train.common import (
    class_weights,
    file_stamps,
    resume_path,
    train_model,
    train_prior,
)
from avfer.train.loop import predict, resolve_device, seed_everything

log = logging.getLogger(__name__)


class EndToEndData:
    """The face store, the optional audio source and which clips a model can score."""

    def __init__(self, model: EndToEnd, ckpt: Mapping[str, Any], face_paths, audio_paths, assignment) -> None:
        spec = model.cnn.spec
        self.store = FrameStore.from_caches(
            face_paths, size=spec["input_size"], chans=spec["in_chans"], assignment=assignment
        )
        self.clips = self.store.clips
        self.audio: tuple[ClipSource, Standardizer] | None = None
        self.hears = "audio" in model.head.frame_keys
        self.visible = self.clips["n_faces"].to_numpy() > 0
        if self.hears:
            if not audio_paths:
                raise AvferError(f"{ckpt['spec']['name']} hears: the end-to-end model needs the audio caches")
            source = ClipSource((), audio_paths, keys=("audio", "audio_mask"), assignment=assignment)
            self.audio = (source, Standardizer.from_state(ckpt["norms"]["audio"]))
            has_audio = {r.clip_id: source.visible(i) for i, r in enumerate(source.refs)}
            sound = self.clips["clip_id"].map(lambda c: has_audio.get(c, False)).to_numpy(bool)
            self.visible |= sound & (self.clips["n_frames"].to_numpy() > 0)

    def dataset(self, rows: Sequence[int], window: int | None, train: bool) -> FaceSequences:
        return FaceSequences(self.store, rows, window=window, train=train, audio=self.audio)

    def clip_loader(self, rows: Sequence[int], window: int | None, batch_size: int) -> DataLoader:
        """Whole clips ``rows``, in order, ``batch_size`` clips a batch."""
        ds = self.dataset(rows, window, train=False)
        return DataLoader(ds, batch_size=batch_size, collate_fn=collate_face_sequences)

    def close(self) -> None:
        self.store.images.reader.close()
        if self.audio is not None:
            self.audio[0].close()


def clip_logits(
    model: EndToEnd, data: EndToEndData, rows: Sequence[int], device: torch.device, batch_size: int = 4
) -> np.ndarray:
    """Logits ``[len(rows), 7]`` (float64) of whole clips ``rows`` of ``data``."""
    if not len(rows):
        return np.zeros((0, len(EMOTIONS)))
    return predict(model.to(device), data.clip_loader(rows, model.window, batch_size), device)[0].astype(
        np.float64
    )


def train_end_to_end(
    name: str,
    *,
    cnn_path: str | Path,
    sequence_path: str | Path,
    face_paths: Sequence[str],
    audio_paths: Sequence[str] = (),
    train: Mapping[str, Any],
    out_model: str | Path,
    out_predictions: str | Path,
    out_metrics: str | Path,
    assignment: Assignment | None = None,
    seed: int = 0,
    threads: int | None = None,
    eval_batch_size: int = 4,
    resume_dir: str | Path | None = None,
    features: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``e2e_<m>`` from the CNN ``cnn_path`` and sequence model ``sequence_path`` (model.pt
    of ``<m>``) on the face caches (and audio caches, early fusion); ``assignment`` is the
    protocol run; ``features``: the CNN's feature layer (the one the sequence model was trained
    on, :func:`avfer.config.feature_settings`). Returns the metrics."""
    if threads:
        torch.set_num_threads(int(threads))
    seed_everything(seed)
    ckpt = torch.load(sequence_path, map_location="cpu", weights_only=True)
    if name != f"e2e_{ckpt['spec']['name']}":
        raise AvferError(f"{sequence_path}: holds {ckpt['spec']['name']}, not the sequence model of {name}")
    model = from_stages(cnn_path, ckpt, bool(train.get("frozen_batch_norm", True)), features)
    if train.get("augment") is not None:
        model.cnn.set_augment(train["augment"])
    data = EndToEndData(model, ckpt, face_paths, audio_paths, assignment)
    clips = data.clips
    labelled = (clips["label"] != "").to_numpy()
    select_on = selection_split(clips["split"][labelled].tolist())
    faces = clips["n_faces"].to_numpy() > 0
    train_rows = np.flatnonzero(labelled & faces & (clips["split"] == "train").to_numpy())
    val_rows = np.flatnonzero(labelled & data.visible & (clips["split"] == select_on).to_numpy())
    if not len(train_rows) or not len(val_rows):
        raise AvferError(f"{name}: needs labelled train and {select_on} clips with faces in the face caches")
    batch_size = int(train["batch_size"])
    gen = torch.Generator()
    train_loader = DataLoader(
        data.dataset(train_rows, model.window, train=True),
        batch_size=batch_size,
        shuffle=True,
        generator=gen,
        collate_fn=collate_face_sequences,
    )

    def loader(rows: Sequence[int]) -> DataLoader:
        return data.clip_loader(rows, model.window, eval_batch_size)

    metric = train["score"]

    def score(logits: np.ndarray, targets: np.ndarray) -> float:
        return compute_metrics(targets, logits.argmax(axis=1))[metric]

    targets = np.array([EMOTIONS.index(x) for x in clips["label"].iloc[train_rows]])
    weight = class_weights(targets, train["balanced_loss"])
    spec = {"spec": ckpt["spec"], "name": name, "features": dict(features or {})}
    resume = None
    if resume_dir is not None:
        inputs = file_stamps([cnn_path, sequence_path, *face_paths, *audio_paths])
        protocol = sorted(zip(clips["clip_id"], clips["split"], clips["label"], strict=True))
        resume = resume_path(resume_dir, spec, result_settings(train), seed, inputs, protocol)
    device = resolve_device(train.get("device", "auto"))
    log.info(
        "%s: %d train clips (one %s-frame sequence each per epoch), %d %s clips, %.2fM parameters",
        name, len(train_rows), model.window or "whole-clip", len(val_rows), select_on,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )  # fmt: skip
    result = train_model(
        model,
        train_loader,
        loader(val_rows),
        train,
        score=score,
        weights=weight,
        device=device,
        seed=seed,
        checkpoint=resume,
        freeze_root=model.cnn,
        lr_scales={"cnn": float(train.get("cnn_lr_factor", 1.0))},
    )
    model.load_state_dict(result.best_state)
    prior = train_prior(targets)
    logits = np.tile(log_prior_logits(prior), (len(clips), 1))
    seen = np.flatnonzero(data.visible)
    logits[seen] = clip_logits(model, data, seen, device, eval_batch_size)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    status = [s if s != "ok" or v else "no_face" for s, v in zip(clips["status"], data.visible, strict=True)]
    df = predictions_frame(
        clips["clip_id"].tolist(), clips["split"].tolist(), clips["label"].tolist(), probs, status, logits
    )
    metrics = evaluate_predictions(df)
    log.info("%s: best epoch %d, %s %s %.3f", name, result.best_epoch, select_on, metric, result.best_score)
    extra = {
        "norms": {k: v for k, v in ckpt["norms"].items() if k != "video"},
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "selected_on": select_on,
        "history": result.history,
        "prior": prior.tolist(),
        "train": dict(train),
        "seed": seed,
    }
    save_end_to_end(out_model, model, spec, result.best_state, extra)
    write_predictions(out_predictions, df)
    write_metrics(out_metrics, metrics)
    data.close()
    if resume is not None and resume.exists():
        resume.unlink()
    return metrics
