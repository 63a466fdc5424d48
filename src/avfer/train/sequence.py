"""Train one sequence model (temporal head, audio model or early fusion) with the shared loop.

:func:`train_sequence_model` reads the caches, standardises with training-split statistics,
trains with :func:`avfer.train.fit` (early stopping on the dev score — val when the protocol
has no dev split — and a resumable checkpoint after every epoch), and writes ``model.pt``,
``predictions.csv`` and ``metrics.json`` in the shared format. The resume checkpoint is named
by a hash of the model spec, training settings, seed, input files and split assignment, so a
changed config or rebuilt cache never resumes a stale run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from avfer.config import result_settings
from avfer.data.sequences import (
    SequenceDataset,
    Standardizer,
    collate_sequences,
    fit_standardizers,
    load_clips,
    standardize,
    visible,
)
from avfer.datasets.splits import Assignment, selection_split
from avfer.errors import AvferError
from avfer.io.atomic import atomic_path
from avfer.metrics import (
    compute_metrics,
    evaluate_predictions,
    log_prior_logits,
    predictions_frame,
    write_metrics,
)
from avfer.metrics import write_predictions as write_predictions_csv
from avfer.models.fusion import load_encoder
from avfer.models.specs import build_model, parse_model_name
from avfer.models.temporal import parse_head
from avfer.train.common import (
    build_scheduler,
    class_weights,
    file_stamps,
    freeze_first,
    make_optimizer,
    resume_path,
    staged_training,
    train_prior,
)
from avfer.train.loop import fit, predict, resolve_device, seed_everything

log = logging.getLogger(__name__)

_ENCODER_KEYS = ("hidden_size", "num_layers", "dropout")


_MODEL_KEYS = {
    "temporal": ("hidden_size", "num_layers", "dropout", "pooling", "attention_dim", "window", "stride"),
    "early_fusion": (
        "freeze",
        "hidden_size",
        "num_layers",
        "dropout",
        "pooling",
        "fc_sizes",
        "window",
        "stride",
    ),
}


def model_settings(name: str, section: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_args, train_settings)`` of model ``name`` from its config section
    (``temporal``, ``audio_models`` or ``early_fusion``)."""
    parsed = parse_model_name(name)
    if parsed.family == "audio":
        return dict(section[parsed.audio]), dict(section["train"])
    if parsed.family not in _MODEL_KEYS:
        raise AvferError(f"{name}: not a sequence model")
    return {k: section[k] for k in _MODEL_KEYS[parsed.family]}, dict(section["train"])


def load_trained(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A trained model (eval mode) and its checkpoint dict (spec, norms, history) from model.pt."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["spec"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def _encoder_args(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    spec = ckpt["spec"]
    parsed = parse_model_name(spec["name"])
    args = {k: spec["args"][k] for k in _ENCODER_KEYS if k in spec["args"]}
    if parsed.family == "temporal":
        head = parse_head(parsed.head or "")
        args.update(cell=head["cell"], bidirectional=head["bidirectional"])
    return args


def train_sequence_model(
    name: str,
    *,
    model_args: Mapping[str, Any],
    train: Mapping[str, Any],
    out_model: str | Path,
    out_predictions: str | Path,
    out_metrics: str | Path,
    feature_paths: Sequence[str] = (),
    audio_paths: Sequence[str] = (),
    pretrained: Mapping[str, str] | None = None,
    assignment: Assignment | None = None,
    seed: int = 0,
    threads: int = 1,
    resume_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train model ``name`` and write its model.pt, predictions.csv and metrics.json.

    ``assignment`` (clip id → (split, label); default: the caches' own) is the protocol run:
    train fits, dev (else val) selects the epoch. Clips without any valid input get the train
    prior (status from their caches). ``pretrained`` maps ``audio`` / ``video`` to the model.pt
    of the trained audio GRU / visual GRU whose encoders an early-fusion option starts from.
    Returns the metrics.
    """
    torch.set_num_threads(max(1, int(threads)))
    parsed = parse_model_name(name)
    clips = load_clips(feature_paths, audio_paths, keys=parsed.inputs, assignment=assignment)
    norms = fit_standardizers(clips)
    standardize(clips, norms)
    dims = {k: int(np.atleast_2d(clips[0].arrays[k]).shape[-1]) for k in norms}
    args = dict(model_args)
    pre = {k: torch.load(p, map_location="cpu", weights_only=True) for k, p in (pretrained or {}).items()}
    for key, ckpt in pre.items():
        args[f"{key}_encoder"] = _encoder_args(ckpt)
    spec = {"name": name, "dims": dims, "args": args}
    seed_everything(seed)
    model = build_model(spec)
    for key, ckpt in pre.items():
        load_encoder(getattr(model, f"{key}_encoder"), ckpt["state_dict"])
        log.info("%s encoder initialised from %s", key, ckpt["spec"]["name"])

    select_on = selection_split([c.split for c in clips])
    train_clips = [c for c in clips if c.split == "train" and c.label]
    val_clips = [c for c in clips if c.split == select_on and c.label]
    if not train_clips or not val_clips:
        raise AvferError(f"{name}: needs labelled train and {select_on} clips in the caches")
    batch_size = int(train["batch_size"])
    train_loader = DataLoader(
        SequenceDataset(train_clips),
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_sequences,
        generator=torch.Generator(),
    )

    def loader(cs: Sequence[Any]) -> DataLoader:
        return DataLoader(SequenceDataset(cs), batch_size=batch_size, collate_fn=collate_sequences)

    metric = train["score"]

    def score(logits: np.ndarray, targets: np.ndarray) -> float:
        return compute_metrics(targets, logits.argmax(axis=1))[metric]

    weight = class_weights([c.target for c in train_clips], train["balanced_loss"])
    freeze_first(model, train.get("freeze_first", 0))
    optimizer = make_optimizer(model, train)
    schedule = build_scheduler(optimizer, train, len(train_loader))
    resume = None
    if resume_dir is not None:
        inputs = file_stamps([*feature_paths, *audio_paths, *(pretrained or {}).values()])
        protocol = sorted((c.clip_id, c.split, c.label) for c in clips)
        resume = resume_path(resume_dir, spec, result_settings(train), seed, inputs, protocol)
    device = resolve_device(train.get("device", "auto"))
    result = fit(
        model,
        train_loader,
        loader(val_clips),
        criterion=nn.CrossEntropyLoss(weight=weight.to(device) if weight is not None else None),
        optimizer=optimizer,
        score=score,
        epochs=int(train["epochs"]),
        device=device,
        seed=seed,
        scheduler=schedule.scheduler,
        scheduler_interval=schedule.interval,
        before_epoch=staged_training(model, train.get("head_epochs", 0)),
        patience=train["patience"] or None,
        amp=bool(train["amp"]),
        grad_clip=train["grad_clip"] or None,
        checkpoint=resume,
    )
    model.load_state_dict(result.best_state)
    logits, _ = predict(model, loader(clips), device)
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    unseen = np.array([not visible(c) for c in clips], dtype=bool)
    prior = train_prior([c.target for c in train_clips])
    probs[unseen] = prior
    logits = logits.astype(np.float64)
    logits[unseen] = log_prior_logits(prior)
    blind = "no_face" if "video_mask" in parsed.inputs else "no_audio"  # a cache said ok, yet no input
    status = [
        ("ok" if not u else blind if c.status == "ok" else c.status)
        for c, u in zip(clips, unseen, strict=True)
    ]
    df = predictions_frame(
        [c.clip_id for c in clips],
        [c.split for c in clips],
        [c.label for c in clips],
        probs,
        status,
        logits,
    )
    metrics = evaluate_predictions(df)
    log.info(
        "%s: best epoch %d, %s %s %.3f; %d clip(s) without input got the fallback",
        name,
        result.best_epoch,
        select_on,
        metric,
        result.best_score,
        int(unseen.sum()),
    )
    with atomic_path(out_model) as tmp:
        torch.save(
            {
                "spec": spec,
                "state_dict": result.best_state,
                "norms": {k: Standardizer.state(v) for k, v in norms.items()},
                "best_epoch": result.best_epoch,
                "best_score": result.best_score,
                "history": result.history,
                "train": dict(train),
                "seed": seed,
            },
            tmp,
        )
    write_predictions_csv(out_predictions, df)
    write_metrics(out_metrics, metrics)
    if resume is not None and resume.exists():
        resume.unlink()
    return metrics
