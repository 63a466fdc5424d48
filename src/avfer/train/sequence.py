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
from avfer.data.batching import LengthBatchSampler
from avfer.data.clip_source import ClipSource
from avfer.data.sequences import (
    SequenceDataset,
    Standardizer,
    Windows,
    collate_sequences,
    fit_standardizers,
)
from avfer.datasets.splits import Assignment, selection_split
from avfer.errors import AvferError
from avfer.io.atomic import atomic_path
from avfer.labels import NUM_CLASSES
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
from avfer.models.temporal import WindowedClassifier, parse_head
from avfer.train.common import (
    class_weights,
    file_stamps,
    resume_path,
    train_model,
    train_prior,
)
from avfer.train.loop import predict, resolve_device, seed_everything

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


def _windows(model: nn.Module) -> Windows | None:
    """How the dataset cuts clips for ``model`` (``None``: whole clips)."""
    if not isinstance(model, WindowedClassifier) or model.window is None:
        return None
    stride = model.stride or model.window
    return Windows(model.window, stride, tuple(model.frame_keys), tuple(model.mask_keys))


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
    clips = ClipSource(feature_paths, audio_paths, keys=parsed.inputs, assignment=assignment)
    refs = clips.refs
    train_ids = [i for i, r in enumerate(refs) if r.split == "train"]
    if not any(clips.visible(i) for i in train_ids):
        sees = {"video_mask": "a face", "audio_mask": "audio", "has_audio": "audio"}
        what = " or ".join(sorted({sees[k] for k in parsed.inputs if k in sees})) or "any input"
        where = f" ({Path(out_model).parent})"
        raise AvferError(
            f"{name}{where}: none of the {len(train_ids)} training clips has {what}, so it cannot be"
            " trained; leave it out (its models list in the config) or give this split's training"
            " clips some"
        )
    norms = fit_standardizers(clips[i] for i in train_ids)
    dims = {k: clips.dims[k] for k in norms}
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

    select_on = selection_split([r.split for r in refs])
    train_idx = [i for i, r in enumerate(refs) if r.split == "train" and r.label]
    val_idx = [i for i, r in enumerate(refs) if r.split == select_on and r.label]
    if not train_idx or not val_idx:
        raise AvferError(f"{name}: needs labelled train and {select_on} clips in the caches")
    batch_size = int(train["batch_size"])
    windows = _windows(model)

    def loader(idx: Sequence[int], shuffle: bool = False) -> DataLoader:
        lengths = [refs[i].length for i in idx]
        return DataLoader(
            SequenceDataset(clips, idx, norms=norms, windows=windows),
            batch_sampler=LengthBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed),
            collate_fn=collate_sequences,
        )

    train_loader = loader(train_idx, shuffle=True)
    metric = train["score"]

    def score(logits: np.ndarray, targets: np.ndarray) -> float:
        return compute_metrics(targets, logits.argmax(axis=1))[metric]

    train_targets = [refs[i].target for i in train_idx]
    weight = class_weights(train_targets, train["balanced_loss"])
    resume = None
    if resume_dir is not None:
        inputs = file_stamps([*feature_paths, *audio_paths, *(pretrained or {}).values()])
        protocol = sorted((r.clip_id, r.split, r.label) for r in refs)
        resume = resume_path(resume_dir, spec, result_settings(train), seed, inputs, protocol)
    device = resolve_device(train.get("device", "auto"))
    result = train_model(
        model,
        train_loader,
        loader(val_idx),
        train,
        score=score,
        weights=weight,
        device=device,
        seed=seed,
        checkpoint=resume,
    )
    model.load_state_dict(result.best_state)
    every = list(range(len(refs)))
    every_loader = loader(every)
    logits = np.empty((len(refs), NUM_CLASSES), np.float32)
    logits[every_loader.batch_sampler.order()] = predict(model, every_loader, device)[0]
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    unseen = np.array([not clips.visible(i) for i in every], dtype=bool)
    prior = train_prior(train_targets)
    probs[unseen] = prior
    logits = logits.astype(np.float64)
    logits[unseen] = log_prior_logits(prior)
    blind = "no_face" if "video_mask" in parsed.inputs else "no_audio"  # a cache said ok, yet no input
    status = [
        ("ok" if not u else blind if r.status == "ok" else r.status)
        for r, u in zip(refs, unseen, strict=True)
    ]
    df = predictions_frame(
        [r.clip_id for r in refs],
        [r.split for r in refs],
        [r.label for r in refs],
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
                "prior": [float(x) for x in prior],  # the fallback of a clip without input (predict)
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
    clips.close()
    if resume is not None and resume.exists():
        resume.unlink()
    return metrics
