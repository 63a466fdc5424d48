"""Train one sequence model (temporal head, audio model or early fusion) with the shared loop.

:func:`train_sequence_model` reads the caches, standardises with training-split statistics,
trains with :func:`avfer.train.fit` (early stopping on the validation score, a resumable
checkpoint after every epoch), and writes ``model.pt``, ``predictions.csv`` and
``metrics.json`` in the shared format. The resume checkpoint is named by a hash of the model
spec, training settings, seed and input files, so a changed config or rebuilt cache never
resumes a stale run.
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

from avfer.data.sequences import (
    SequenceDataset,
    Standardizer,
    collate_sequences,
    fit_standardizers,
    load_clips,
    standardize,
)
from avfer.errors import AvferError
from avfer.io.atomic import atomic_path
from avfer.io.hdf5 import config_hash
from avfer.labels import NUM_CLASSES
from avfer.metrics import compute_metrics, evaluate_predictions, predictions_frame, write_metrics
from avfer.metrics import write_predictions as write_predictions_csv
from avfer.models.fusion import load_encoder
from avfer.models.specs import build_model, parse_model_name
from avfer.models.temporal import parse_head
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


def _file_stamp(paths: Sequence[str]) -> list[tuple[str, int, int]]:
    return [(str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in paths]


def _class_weights(targets: Sequence[int]) -> torch.Tensor:
    counts = np.bincount(np.asarray(targets), minlength=NUM_CLASSES).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (NUM_CLASSES * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


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
    seed: int = 0,
    threads: int = 1,
    resume_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train model ``name`` and write its model.pt, predictions.csv and metrics.json.

    ``pretrained`` maps ``audio`` / ``video`` to the model.pt of the trained audio GRU / visual
    GRU whose encoders an early-fusion option starts from. Returns the metrics.
    """
    torch.set_num_threads(max(1, int(threads)))
    parsed = parse_model_name(name)
    clips = load_clips(feature_paths, audio_paths, keys=parsed.inputs)
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

    train_clips = [c for c in clips if c.split == "train" and c.label]
    val_clips = [c for c in clips if c.split == "val" and c.label]
    if not train_clips or not val_clips:
        raise AvferError(f"{name}: needs labelled train and val clips in the caches")
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

    weight = _class_weights([c.target for c in train_clips]) if train["balanced_loss"] else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=train["lr"], weight_decay=train["weight_decay"])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, train["epochs"]))
    resume = None
    if resume_dir is not None:
        stamp = {
            "spec": spec,
            "train": dict(train),
            "seed": seed,
            "inputs": _file_stamp([*feature_paths, *audio_paths, *(pretrained or {}).values()]),
        }
        resume = Path(resume_dir) / f"resume-{config_hash(stamp)}.pt"
        for stale in Path(resume_dir).glob("resume-*.pt"):
            if stale != resume:
                stale.unlink()
    device = resolve_device(train["device"])
    result = fit(
        model,
        train_loader,
        loader(val_clips),
        criterion=nn.CrossEntropyLoss(weight=weight).to(device),
        optimizer=optimizer,
        score=score,
        epochs=int(train["epochs"]),
        device=device,
        seed=seed,
        scheduler=scheduler,
        patience=train["patience"] or None,
        amp=bool(train["amp"]),
        grad_clip=train["grad_clip"] or None,
        checkpoint=resume,
    )
    model.load_state_dict(result.best_state)
    logits, _ = predict(model, loader(clips), device)
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    df = predictions_frame(
        [c.clip_id for c in clips], [c.split for c in clips], [c.label for c in clips], probs
    )
    metrics = evaluate_predictions(df)
    log.info(
        "%s: best epoch %d, val %s %.3f, val accuracy %.3f",
        name,
        result.best_epoch,
        metric,
        result.best_score,
        metrics["val"]["accuracy"],
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
