"""Visual CNN training: static pre-training and fine-tuning on the clip faces of the face cache.

Both use the shared :func:`avfer.train.fit` (early stopping on validation, a resumable
checkpoint after every epoch, AMP on CUDA) with the fast lazy face-frame data path of
:mod:`avfer.data.frames`. ``cnn`` and ``pretrain`` are the config sections of the same names.
The resume checkpoint is named after a hash of the config and the input files, so a changed
config or re-made input never resumes a stale run; it is removed once the model is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avfer.config import FEATURE_KEYS, feature_settings, result_settings
from avfer.data.clips import clip_loader
from avfer.data.frames import FrameStore, batch_loader, even_subsample
from avfer.data.static import load_static, one_hot
from avfer.datasets.splits import Assignment, selection_split
from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.metrics import (
    compute_metrics,
    evaluate_predictions,
    plot_confusion,
    write_metrics,
    write_predictions,
)
from avfer.models.face import FaceModel, save_face_model
from avfer.models.zoo import local_weights
from avfer.train.cnn_predict import aggregate_frames, predict_clips
from avfer.train.common import (
    class_weights,
    file_stamps,
    resume_path,
    train_model,
    train_prior,
)
from avfer.train.loop import FitResult, predict, resolve_device, seed_everything

log = logging.getLogger(__name__)

Score = Callable[[np.ndarray, np.ndarray], float]
# what each split of pre-training's metrics.json did (FER2013: val = PublicTest, test = PrivateTest)
PRETRAIN_ROLES = {
    "val": "selection (chose the epoch; FER2013 PublicTest: optimistic)",
    "test": "held out (FER2013 PrivateTest)",
}


def build_model(backbone: str, cnn: Mapping[str, Any], init: str | Path | None = None) -> FaceModel:
    """A :class:`FaceModel` shaped by the ``cnn`` config, initialised from ``init`` (a local
    weights file: our ``model.pt``, a bare state_dict or, for mini_xception, a Keras .hdf5), else
    from ``cnn.pretrained_paths[backbone]`` / ``cnn.pretrained_path``, else ``cnn.pretrained``
    (``ferplus``: the shipped face model; ``imagenet``: timm's / torchvision's download); its
    feature layer that of :func:`avfer.config.feature_settings` (the trainers leave those keys out:
    see :func:`_trained`)."""
    init = init or local_weights(backbone, cnn)
    features = feature_settings(cnn, backbone)
    return FaceModel(
        backbone,
        input_size=cnn["input_size"],
        in_chans=cnn["in_chans"],
        augment=cnn["augment"],
        normalization=cnn["normalization"],
        pretrained_path=init,
        pretrained="imagenet" if not init and cnn.get("pretrained") == "imagenet" else "none",
        **features,
    )


def _score(select_on: str) -> Score:
    def score(logits: np.ndarray, targets: np.ndarray) -> float:
        m = compute_metrics(targets, logits.argmax(1))
        return float(m[select_on])

    return score


def clip_score(select_on: str, groups: np.ndarray, clip_targets: np.ndarray) -> Score:
    """Validation score on clips: the softmax of their rows (frames, views) averaged per clip
    (``groups``: the clip of each row), then ``select_on`` over the clips that have a row."""

    def score(logits: np.ndarray, _targets: np.ndarray) -> float:
        probs = aggregate_frames(logits, groups, len(clip_targets), "mean")
        seen = np.isin(np.arange(len(clip_targets)), groups)
        m = compute_metrics(clip_targets[seen], probs[seen].argmax(1))
        return float(m[select_on])

    return score


def _interrupted(result: FitResult, hp: Mapping[str, Any], stop_after: int | None) -> bool:
    """Whether :func:`fit` stopped because of ``stop_after`` (not at the end or early stopping)."""
    done = len(result.history)
    early = bool(hp["patience"]) and done - 1 - result.best_epoch >= hp["patience"]
    return stop_after is not None and done < hp["epochs"] and not early


def pretrain(
    backbone: str,
    pretrain_cfg: Mapping[str, Any],
    cnn: Mapping[str, Any],
    *,
    model_path: str | Path,
    metrics_path: str | Path,
    seed: int = 0,
    threads: int | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Pre-train ``backbone`` on the static datasets of ``pretrain_cfg``; write ``model.pt`` and
    ``metrics.json`` (image-level val/test metrics; per dataset under ``by_dataset``)."""
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    hp = {**pretrain_cfg["train"], "amp": cnn["amp"]}
    device = resolve_device(cnn["device"])
    size, chans = cnn["input_size"], cnn["in_chans"]
    data = load_static(
        pretrain_cfg["datasets"],
        size=size,
        chans=chans,
        val_fraction=pretrain_cfg["val_fraction"],
        seed=seed,
        workers=pretrain_cfg.get("workers", 2),
    )
    train, val = data.part("train"), data.part("val")
    if not len(train.labels) or not len(val.labels):
        raise AvferError(f"pretrain: need train and val images, got {len(train.labels)} / {len(val.labels)}")
    model = build_model(backbone, _trained(cnn))
    bs = hp["batch_size"]
    # crowd label distributions (ferplus) when a dataset has them, else the labels themselves
    soft = not np.array_equal(train.soft, one_hot(train.labels))
    targets = train.soft if soft else train.labels
    train_loader = batch_loader(
        train.images, targets, batch_size=bs, shuffle=True, drop_last=len(train.labels) > bs, seed=seed
    )
    val_loader = batch_loader(val.images, val.labels, batch_size=cnn["eval_batch_size"])
    folder = Path(model_path).parent
    ckpt = resume_path(
        folder, backbone, _settings(pretrain_cfg), _settings(cnn), seed, _static_stamps(pretrain_cfg)
    )
    result = train_model(
        model,
        train_loader,
        val_loader,
        hp,
        score=_score(hp["score"]),
        weights=class_weights(train.labels, hp["balanced_loss"]),
        device=device,
        seed=seed,
        checkpoint=ckpt,
        stop_after=stop_after,
    )
    if _interrupted(result, hp, stop_after):
        return {}  # interrupted on purpose (tests): leave the resume checkpoint, write nothing
    model.load_state_dict(result.best_state)
    metrics: dict[str, Any] = {}
    for split in ("val", "test"):
        part = data.part(split)
        if len(part.labels):
            scores = _image_metrics(model, part.images, part.labels, cnn, device)
            metrics[split] = {**scores, "role": PRETRAIN_ROLES[split]}
    metrics["by_dataset"] = {
        name: {
            **_image_metrics(
                model, val.images[val.sources == name], val.labels[val.sources == name], cnn, device
            ),
            "role": PRETRAIN_ROLES["val"],
        }
        for name in np.unique(val.sources)
    }
    extra = {"stage": "pretrain", "best_epoch": result.best_epoch, "history": result.history}
    save_face_model(model_path, model, result.best_state, extra)
    write_metrics(metrics_path, metrics)
    ckpt.unlink(missing_ok=True)
    log.info("pretrain %s: best epoch %d, val %s", backbone, result.best_epoch, _summary(metrics["val"]))
    return metrics


def _settings(section: Mapping[str, Any]) -> dict[str, Any]:
    """A config section without what does not change results (part of the resume hash)."""
    return result_settings(section, "backbones", "enabled", *FEATURE_KEYS)


def _trained(cnn: Mapping[str, Any]) -> dict[str, Any]:
    """The ``cnn`` section the trainers build their model from: without the feature layer keys
    (its weights do not depend on them; whoever reads features sets them, :func:`load_face_model`)."""
    return {k: v for k, v in cnn.items() if k not in FEATURE_KEYS}


def _static_stamps(pretrain_cfg: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    return file_stamps([d["path"] for d in pretrain_cfg["datasets"] if Path(d["path"]).is_file()])


def _image_metrics(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, cnn: Mapping[str, Any], device: torch.device
) -> dict[str, Any]:
    loader = batch_loader(images, labels, batch_size=cnn["eval_batch_size"])
    logits, targets = predict(model, loader, device)
    return compute_metrics(targets, logits.argmax(1))


def _summary(m: Mapping[str, Any]) -> str:
    return f"acc {m['accuracy']:.3f} uar {m['uar']:.3f} (n={m['n']})"


def finetune(
    backbone: str,
    face_paths: Sequence[str | os.PathLike[str]],
    cnn: Mapping[str, Any],
    *,
    model_path: str | Path,
    predictions_path: str | Path,
    metrics_path: str | Path,
    confusion_path: str | Path | None = None,
    init: str | Path | None = None,
    assignment: Assignment | None = None,
    seed: int = 0,
    threads: int | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Fine-tune on the face frames of the train clips (each frame labelled with its clip's
    label; frames without a face excluded), select the epoch on the dev clips (val when the
    ``assignment`` has no dev split), then predict every clip of ``face_paths`` and write
    ``model.pt``, ``predictions.csv``, ``metrics.json`` and the confusion matrix of the selection
    split. ``assignment`` (clip id → split, label; default: the caches' own) is the protocol run;
    ``init`` (e.g. the pre-trained ``model.pt``) overrides ``cnn.pretrained_path``.
    """
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    device = resolve_device(cnn["device"])
    size, chans = cnn["input_size"], cnn["in_chans"]
    hp = {**cnn["train"], "amp": cnn["amp"]}
    select_on = selection_split(assignment) if assignment is not None else "val"
    read = {"size": size, "chans": chans, "labelled_only": True, "assignment": assignment}
    train = FrameStore.from_caches(face_paths, splits=["train"], **read)
    val = FrameStore.from_caches(face_paths, splits=[select_on], **read)
    if not len(train.images) or not len(val.images):
        raise AvferError(
            f"finetune: no face frames in the {'train' if not len(train.images) else select_on} clips "
            f"of {len(face_paths)} face cache(s) (did face detection fail everywhere?)"
        )
    model = build_model(backbone, _trained(cnn), init)
    bs, k, seq = hp["batch_size"], cnn["frames_per_clip"], int(cnn.get("sequence_frames") or 0)
    if seq:  # one T-frame sequence per clip and epoch, one loss per sequence (mean frame logits)
        seen = np.flatnonzero(train.clips["n_faces"].to_numpy() > 0)
        train_loader = clip_loader(
            train, seen, frames=seq, mode="dense", batch_size=bs, train=True, seed=seed,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
        epoch_targets = np.array([EMOTIONS.index(x) for x in train.clips["label"].iloc[seen]])
    else:
        train_loader = batch_loader(
            train.images,
            train.targets,
            train.clip,
            batch_size=bs,
            frames_per_clip=k,
            shuffle=True,
            drop_last=len(train.images) > bs,
            seed=seed,
            pin_memory=device.type == "cuda",
        )
        epoch_targets = _epoch_targets(train, k)
    sub = even_subsample(val.clip, cnn["val_frames_per_clip"])
    val_loader = batch_loader(val.images.take(sub), val.targets[sub], batch_size=cnn["eval_batch_size"])
    clip_targets = np.array([EMOTIONS.index(x) for x in val.clips["label"]])
    per_epoch = train_loader.sampler._epoch_size()
    log.info(
        "finetune %s: %d train frames of %d clips (%d %s per epoch), %d %s frames of %d clips",
        backbone,
        len(train.images),
        len(train.clips),
        per_epoch,
        f"{seq}-frame sequences" if seq else "frames",
        len(sub),
        select_on,
        len(val.clips),
    )
    weights = class_weights(epoch_targets, hp["balanced_loss"])  # the samples an epoch sees
    folder = Path(model_path).parent
    stamps = file_stamps([*face_paths, *([init] if init else [])])
    ckpt = resume_path(folder, backbone, _settings(cnn), seed, stamps)
    result = train_model(
        model,
        train_loader,
        val_loader,
        hp,
        score=clip_score(hp["score"], val.clip[sub], clip_targets),
        weights=weights,
        device=device,
        seed=seed,
        checkpoint=ckpt,
        stop_after=stop_after,
    )
    if _interrupted(result, hp, stop_after):
        return {}  # interrupted on purpose (tests): leave the resume checkpoint, write nothing
    model.load_state_dict(result.best_state)
    prior = train_prior([EMOTIONS.index(x) for x in train.clips["label"]])
    df = predict_clips(
        model,
        face_paths,
        aggregate=cnn["aggregate"],
        prior=prior,
        batch_size=cnn["eval_batch_size"],
        assignment=assignment,
    )
    metrics = evaluate_predictions(df)
    write_predictions(predictions_path, df)
    write_metrics(metrics_path, metrics)
    if confusion_path is not None:
        m = metrics[select_on]
        title = (
            f"cnn_{backbone} {select_on}: acc {m['accuracy']:.2f}, UAR {m['uar']:.2f} ({cnn['aggregate']})"
        )
        plot_confusion(m["confusion"], confusion_path, title)
    extra = {"stage": "finetune", "best_epoch": result.best_epoch, "history": result.history}
    save_face_model(model_path, model, result.best_state, extra | {"prior": prior.tolist()})
    ckpt.unlink(missing_ok=True)
    for split, m in metrics.items():
        log.info("cnn_%s %s: %s", backbone, split, _summary(m))
    return metrics


def _epoch_targets(store: FrameStore, k: int | None) -> np.ndarray:
    """Targets of the frames one epoch draws (at most ``k`` per clip)."""
    n = store.clips["n_faces"].to_numpy()
    per_clip = n if k is None else np.minimum(n, k)
    lut = np.array([EMOTIONS.index(x) for x in store.clips["label"]])
    return np.repeat(lut, per_clip)
