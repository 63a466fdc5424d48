"""Clip-level models of a bundle on one video: the pipeline's sequence models (temporal heads
over CNN features, audio models over openSMILE features, early fusion) and its late fusion.

Their inputs are built as the pipeline builds them, from the same code: CNN features
(:func:`avfer.train.cnn_predict.frame_features`) of the main subject's face crops on the 25 fps
grid, audio LLDs and functionals from :func:`avfer.audio.process_clip` with the run's audio
settings, arranged by :func:`avfer.data.sequences.load_clips`' rules, standardised with the
training statistics stored in each model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from avfer.bundle import Bundle
from avfer.data.clip_source import FRAME_KEYS
from avfer.data.sequences import Clip, SequenceDataset, Standardizer, collate_sequences, standardize, visible
from avfer.fusion.late import FusionRule
from avfer.models.specs import parse_model_name
from avfer.train.cnn_predict import frame_features


def _audio(bundle: Bundle, path: str | Path, n: int) -> tuple[dict[str, np.ndarray], str]:
    from avfer.audio import LldExtractor, process_clip

    cfg = dict(bundle.spec["audio"])
    rec = process_clip(path, LldExtractor.from_config(cfg), with_std=bool(cfg.get("lld_std", False)))
    lld, mask = rec.lld, rec.lld_mask
    if len(lld) != n:  # as load_clips: cut or pad (invalid) to the video length
        lld = np.concatenate([lld, np.zeros((max(0, n - len(lld)), lld.shape[1]), lld.dtype)])[:n]
        mask = np.concatenate([mask, np.zeros(max(0, n - len(mask)), bool)])[:n]
    arrays = {"audio": lld, "audio_mask": mask, "functionals": rec.functionals}
    arrays["has_audio"] = np.asarray(rec.status not in ("no_audio", "failed"))
    return arrays, rec.status


def needs_features(bundle: Bundle) -> bool:
    """Whether a clip model of the bundle reads the face CNN's per-frame features."""
    return any({"video", "video_mask"} & set(parse_model_name(m).inputs) for m in bundle.models)


def clip_inputs(
    bundle: Bundle, path: str | Path, main: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], str]:
    """The input arrays of the bundle's models for the video ``path`` whose main subject is
    ``main`` (``has_face`` [T] and ``features`` [T, D], or the crops ``faces``): CNN features
    and/or audio on the 25 fps grid; and the audio status (``ok``, ``no_audio``, ``failed``, or
    ``not_used`` when no model hears)."""
    n, has = len(main["has_face"]), main["has_face"]
    keys = {k for name in bundle.models for k in parse_model_name(name).inputs}
    arrays: dict[str, np.ndarray] = {}
    if keys & {"video", "video_mask"}:
        if "features" in main:
            video = np.where(has[:, None], main["features"], 0).astype(np.float32)
        else:
            feats = frame_features(bundle.face_model, main["faces"][has])
            video = np.zeros((n, bundle.face_model.feature_dim), np.float32)
            video[has] = feats
        arrays.update(video=video, video_mask=has.copy())
    status = "not_used"
    if keys & {"audio", "audio_mask", "functionals", "has_audio"}:
        audio, status = _audio(bundle, path, n)
        arrays.update(audio)
    for k in ("video", "audio", "functionals"):
        if k in arrays:
            arrays[k] = np.nan_to_num(np.asarray(arrays[k], np.float32), posinf=0.0, neginf=0.0)
    return arrays, status


def model_norms(bundle: Bundle) -> dict[str, dict[str, Standardizer]]:
    """Each sequence model's training standardisers (model name → input key → standardiser)."""
    return {
        name: {k: Standardizer.from_state(v) for k, v in ckpt["norms"].items()}
        for name, (_, ckpt) in bundle.models.items()
    }


@torch.inference_mode()
def model_scores(
    bundle: Bundle,
    arrays: dict[str, np.ndarray],
    span: tuple[int, int] | None = None,
    norms: dict[str, dict[str, Standardizer]] | None = None,
) -> dict[str, np.ndarray]:
    """Class probabilities of each sequence model of the bundle on ``arrays`` (the per-frame
    ones cut to frames ``span = (start, stop)``; clip-level functionals as they are);
    ``norms``: :func:`model_norms` of the bundle (made here when not given)."""
    return {name: probs for name, (probs, _) in model_outputs(bundle, arrays, span, norms).items()}


@torch.inference_mode()
def model_outputs(
    bundle: Bundle,
    arrays: dict[str, np.ndarray],
    span: tuple[int, int] | None = None,
    norms: dict[str, dict[str, Standardizer]] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`model_scores` with each model's clip logits: name → (probabilities, logits). A
    clip (or span) without any input of a model gets that model's fallback, as in the pipeline:
    its training prior (the bundle's face-CNN prior for models saved without one)."""
    from avfer.metrics import log_prior_logits

    device = next(bundle.face_model.parameters()).device
    norms = norms if norms is not None else model_norms(bundle)
    scores = {}
    for name, (model, ckpt) in bundle.models.items():
        inputs = {k: arrays[k] for k in parse_model_name(name).inputs}
        if span is not None:
            inputs = {k: v[span[0] : span[1]] if k in FRAME_KEYS else v for k, v in inputs.items()}
        clip = Clip(name, "", "", {k: v.copy() for k, v in inputs.items()})
        if not visible(clip):
            prior = np.asarray(ckpt.get("prior", bundle.prior), np.float64)
            scores[name] = (prior, np.asarray(log_prior_logits(prior[None]), np.float64)[0])
            continue
        standardize([clip], norms[name])
        batch, _ = collate_sequences([SequenceDataset([clip])[0]])
        logits = model(**{k: v.to(device) for k, v in batch.items()}).float().cpu()
        scores[name] = (torch.softmax(logits.double(), dim=1).numpy()[0], logits.double().numpy()[0])
    return scores


def face_clip_logits(bundle: Bundle, logits: np.ndarray) -> np.ndarray:
    """The face CNN's clip logits as the pipeline writes them (its ``z_`` columns): the mean of
    the frame ``logits`` [F, 7], the log of the training prior for a clip without a face."""
    from avfer.metrics import log_prior_logits

    if len(logits):
        return np.asarray(logits, np.float64).mean(axis=0)
    return np.asarray(log_prior_logits(bundle.prior[None]), np.float64)[0]


def clip_scores(
    bundle: Bundle, path: str | Path, main: dict[str, np.ndarray], face_probs: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str, dict[str, np.ndarray]]:
    """Class probabilities and clip logits of every model of the bundle (the face CNN's: its
    ``face_probs`` and :func:`face_clip_logits`) for the video ``path`` whose main subject is
    ``main`` (``has_face``, ``logits``), the audio status (see :func:`clip_inputs`) and the
    models' input arrays."""
    face = main["logits"][main["has_face"]]
    scores = {bundle.face_name: np.asarray(face_probs, np.float64)}
    logits = {bundle.face_name: face_clip_logits(bundle, face)}
    if not bundle.models:
        return scores, logits, "not_used", {}
    arrays, status = clip_inputs(bundle, path, main)
    outputs = model_outputs(bundle, arrays)
    scores |= {name: p for name, (p, _) in outputs.items()}
    logits |= {name: z for name, (_, z) in outputs.items()}
    return scores, logits, status, arrays


def audio_model(bundle: Bundle) -> str | None:
    """The model of the bundle whose scores are the audio curve: the first audio model on
    frame-level LLDs, else the first audio model (``None`` without one)."""
    audio = [m for m in bundle.models if parse_model_name(m).family == "audio"]
    framed = [m for m in audio if set(parse_model_name(m).inputs) & set(FRAME_KEYS)]
    return (framed or audio or [None])[0]


def window_curves(
    bundle: Bundle,
    arrays: dict[str, np.ndarray],
    face_logits: np.ndarray,
    has_face: np.ndarray,
    *,
    window: int,
    hop: int = 5,
) -> dict[str, np.ndarray]:
    """Per-frame ``audio`` and ``fused`` probabilities ``[T, 7]`` (those the bundle has): every
    model scored on the ``window`` frames centred on every ``hop``-th frame (the face CNN: its
    aggregate over the window's face frames, the training prior without any), fused by the
    bundle's late fusion, linearly interpolated in between. A window at least as long as the
    clip gives the clip's own scores on every frame."""
    n = len(has_face)
    if not bundle.models or n == 0:
        return {}
    from avfer.predict.runner import clip_probs

    audio_name = audio_model(bundle)
    norms = model_norms(bundle)  # once, not per window
    centres = np.unique(np.r_[np.arange(0, n, max(1, hop)), n - 1])
    rows: dict[str, list[np.ndarray]] = {"audio": [], "fused": []}
    for c in centres:
        a = int(np.clip(c - window // 2, 0, max(0, n - window)))
        span = (a, min(n, a + window))
        face = has_face[span[0] : span[1]]
        logits = face_logits[span[0] : span[1]][face]
        p_face = clip_probs(logits, bundle.aggregate) if face.any() else bundle.prior
        outputs = model_outputs(bundle, arrays, span, norms)
        scores = {bundle.face_name: p_face} | {name: p for name, (p, _) in outputs.items()}
        logits = {bundle.face_name: face_clip_logits(bundle, face_logits[span[0] : span[1]][face])}
        logits |= {name: z for name, (_, z) in outputs.items()}
        if audio_name is not None:
            rows["audio"].append(scores[audio_name])
        fused = fuse(bundle, scores, logits)
        if fused is not None:
            rows["fused"].append(fused)
    t = np.arange(n)
    return {
        k: np.stack([np.interp(t, centres, col) for col in np.asarray(v).T], axis=1)
        for k, v in rows.items()
        if v
    }


def fuse(
    bundle: Bundle, scores: dict[str, np.ndarray], logits: dict[str, np.ndarray] | None = None
) -> np.ndarray | None:
    """The bundle's late fusion (``None`` without one) of the models' clip probabilities
    ``scores`` or, for a fusion fitted on logits, their clip ``logits``, as the pipeline's
    :class:`~avfer.fusion.late.FusionRule` applies it (softmax of logits and regressions)."""
    f = bundle.fusion
    if not f:
        return None
    on_logits = f.get("scores", "probabilities") == "logits"
    if on_logits and logits is None:
        raise ValueError("this bundle's fusion is fitted on logits: pass the models' clip logits")
    rule = FusionRule(f["method"], f["mode"], np.asarray(f["weights"], np.float64), bool(f.get("softmax")))
    given = logits if on_logits else scores
    return rule.apply(np.stack([given[m] for m in f["models"]])[:, None, :])[0]


def model_summary(bundle: Bundle, scores: dict[str, np.ndarray], fused: np.ndarray | None) -> dict[str, Any]:
    """``models`` (name → label, probabilities) and ``fusion`` entries of the clip summary."""
    from avfer.predict.runner import labelled

    out: dict[str, Any] = {"models": {m: labelled(p) for m, p in scores.items()}}
    if fused is not None:
        out["fusion"] = {"method": bundle.fusion["method"], **labelled(fused)}  # type: ignore[index]
    return out
