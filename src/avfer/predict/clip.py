"""Clip-level models of a bundle on one video: the pipeline's sequence models (temporal heads
over CNN features, audio models over openSMILE features, early fusion), end-to-end models, video
networks, its other face CNNs, and its late fusion.

Their inputs are built as the pipeline builds them, from the same code: CNN features
(:func:`avfer.train.cnn_predict.frame_features`, of the CNN each model was trained on) of the
main subject's face crops on the 25 fps grid, audio LLDs and functionals from
:func:`avfer.audio.process_clip` with the run's audio settings, arranged by
:func:`avfer.data.sequences.load_clips`' rules, standardised with the training statistics stored
in each model; an end-to-end model's own CNN features, standardised by its buffers; a video
network's clips of face frames sampled from the spooled face cache
(:func:`avfer.train.video.predict_video_clips` on a :class:`~avfer.data.frames.FrameStore`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avfer.bundle import Bundle
from avfer.data.clip_source import FRAME_KEYS
from avfer.data.sequences import Clip, SequenceDataset, Standardizer, collate_sequences, standardize, visible
from avfer.data.transforms import fit_images
from avfer.fusion.late import FusionRule
from avfer.labels import EMOTIONS
from avfer.metrics import log_prior_logits
from avfer.models.end_to_end import EndToEnd
from avfer.models.face import FaceModel
from avfer.models.specs import parse_model_name
from avfer.predict.tracks import Classify
from avfer.train.cnn_predict import aggregate_frames, frame_features

Outputs = dict[str, tuple[np.ndarray, np.ndarray]]  # model name → (clip probabilities, clip logits)


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


def video_networks(bundle: Bundle) -> list[str]:
    """The bundle's video networks (clip models that read the spooled face crops)."""
    return [m for m in bundle.models if parse_model_name(m).family == "video"]


def _source(name: str) -> str | None:
    """Which per-frame features model ``name`` reads: a CNN's, an end-to-end model's own, none."""
    parsed = parse_model_name(name)
    return name if parsed.family == "end_to_end" else parsed.feature_cnn


@torch.inference_mode()
def crop_logits(model: FaceModel, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits ``[n, 7]`` of uint8 face crops ``[n, h, w, 3]`` (eval mode)."""
    device = next(model.parameters()).device
    out = np.zeros((len(crops), len(EMOTIONS)), np.float32)
    for i in range(0, len(crops), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(crops[i : i + batch_size])).to(device)
        out[i : i + batch_size] = model(x).float().cpu().numpy()
    return out


@torch.inference_mode()
def end_to_end_features(model: EndToEnd, crops: np.ndarray) -> np.ndarray:
    """An end-to-end model's standardised CNN features ``[n, D]`` of face crops, as it computes
    them in training (crops fitted to its CNN's input first, as its face store does)."""
    spec = model.cnn.spec
    x = fit_images(crops, spec["input_size"], spec["in_chans"]).to(model.mean.device)
    return model.features(x).float().cpu().numpy()


def frame_outputs(bundle: Bundle) -> dict[str, tuple[Classify, int]]:
    """What the main subject's crops must give per frame for the bundle's clip models, key →
    (function of uint8 crops, width): ``features:<cnn>`` for the sequence models over that CNN,
    ``features:<e2e model>`` for an end-to-end model, ``logits:<cnn>`` for a fused face CNN."""
    out: dict[str, tuple[Classify, int]] = {}
    for name, (model, _) in bundle.models.items():
        src = _source(name)
        if src is None or f"features:{src}" in out:
            continue
        if src == name:
            out[f"features:{src}"] = (partial(end_to_end_features, model), len(model.mean))
        else:
            cnn = bundle.cnn(src)
            out[f"features:{src}"] = (partial(frame_features, cnn), cnn.feature_dim)
    for name in bundle.member_cnns:
        out[f"logits:{name}"] = (partial(crop_logits, bundle.cnns[name]), 7)
    return out


def clip_inputs(
    bundle: Bundle, path: str | Path, main: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], str]:
    """The input arrays of the bundle's models for the video ``path`` whose main subject is
    ``main`` (``has_face`` [T] and the ``features:<source>`` [T, D] of :func:`frame_outputs`):
    per feature source ``video@<source>``, ``video_mask`` and/or the audio on the 25 fps grid;
    and the audio status (``ok``, ``no_audio``, ``failed``, or ``not_used`` when no model hears)."""
    n, has = len(main["has_face"]), main["has_face"]
    keys = {k for name in bundle.models for k in parse_model_name(name).inputs}
    arrays: dict[str, np.ndarray] = {}
    for key in (k for k in main if k.startswith("features:")):
        arrays[f"video@{key.split(':', 1)[1]}"] = np.where(has[:, None], main[key], 0).astype(np.float32)
    if keys & {"video", "video_mask"}:
        arrays["video_mask"] = has.copy()
    status = "not_used"
    if keys & {"audio", "audio_mask", "functionals", "has_audio"}:
        audio, status = _audio(bundle, path, n)
        arrays.update(audio)
    for k in [k for k in arrays if k.split("@")[0] in ("video", "audio", "functionals")]:
        arrays[k] = np.nan_to_num(np.asarray(arrays[k], np.float32), posinf=0.0, neginf=0.0)
    return arrays, status


def _model_arrays(name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model ``name``'s inputs of ``arrays``: ``video`` is its source's ``video@<source>``
    (or ``video`` itself, arrays of a single feature source)."""
    src = f"video@{_source(name)}"
    return {k: arrays[src if k == "video" and src in arrays else k] for k in parse_model_name(name).inputs}


def model_norms(bundle: Bundle) -> dict[str, dict[str, Standardizer]]:
    """Each sequence model's training standardisers (model name → input key → standardiser)."""
    return {
        name: {k: Standardizer.from_state(v) for k, v in ckpt.get("norms", {}).items()}
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
    """:func:`model_scores` with each model's clip logits: name → (probabilities, logits), for
    every sequence and end-to-end model (video networks: :func:`video_outputs`). A clip (or span)
    without any input of a model gets that model's fallback, as in the pipeline: its training
    prior (the bundle's face-CNN prior for models saved without one)."""
    device = next(bundle.face_model.parameters()).device
    norms = norms if norms is not None else model_norms(bundle)
    scores = {}
    for name, (model, ckpt) in bundle.models.items():
        if parse_model_name(name).family == "video":
            continue
        inputs = _model_arrays(name, arrays)
        if span is not None:
            inputs = {k: v[span[0] : span[1]] if k in FRAME_KEYS else v for k, v in inputs.items()}
        clip = Clip(name, "", "", {k: v.copy() for k, v in inputs.items()})
        if not visible(clip):
            prior = np.asarray(ckpt.get("prior", bundle.prior), np.float64)
            scores[name] = (prior, np.asarray(log_prior_logits(prior[None]), np.float64)[0])
            continue
        standardize([clip], norms[name])
        batch, _ = collate_sequences([SequenceDataset([clip])[0]])
        head = model.head if isinstance(model, EndToEnd) else model  # its features: end_to_end_features
        logits = head(**{k: v.to(device) for k, v in batch.items()}).float().cpu()
        scores[name] = (torch.softmax(logits.double(), dim=1).numpy()[0], logits.double().numpy()[0])
    return scores


def cnn_outputs(bundle: Bundle, main: dict[str, np.ndarray], span: tuple[int, int] | None = None) -> Outputs:
    """Clip probabilities and logits of the face model and the bundle's fused face CNNs from the
    main subject's frame logits (``logits``, ``logits:<cnn>``) over the frames ``span``, as the
    pipeline writes them: the bundle's aggregate and the mean of the face frames' logits (its
    ``z_`` columns); without a face frame, each CNN's training prior and its log."""
    a, b = span or (0, len(main["has_face"]))
    has = main["has_face"][a:b]
    out = {}
    for name in [bundle.face_name, *bundle.member_cnns]:
        frames = main["logits" if name == bundle.face_name else f"logits:{name}"][a:b][has]
        if len(frames):
            p = aggregate_frames(frames, np.zeros(len(frames), np.int64), 1, bundle.aggregate)[0]
            out[name] = (np.asarray(p, np.float64), np.asarray(frames, np.float64).mean(axis=0))
        else:
            prior = bundle.cnn_prior(name)
            out[name] = (prior, np.asarray(log_prior_logits(prior[None]), np.float64)[0])
    return out


def video_outputs(bundle: Bundle, faces: str | Path) -> Outputs:
    """Clip probabilities and logits of the bundle's video networks on the main subject's face
    cache ``faces`` (:class:`avfer.predict.spool.FaceSpool`), as the pipeline predicts its clips:
    at most ``store_frames`` evenly spaced face frames, ``test_clips`` views; the training prior
    for a clip without a face."""
    from avfer.data.frames import FrameStore
    from avfer.train.video import predict_video_clips

    out = {}
    for name in video_networks(bundle):
        model, extra = bundle.models[name]
        s = extra["settings"]
        store = FrameStore.from_caches(
            [faces], size=s["input_size"], chans=s["in_chans"], max_frames=s["store_frames"]
        )
        device = next(model.parameters()).device
        probs, logits = predict_video_clips(model, store, s, np.asarray(extra["prior"]), device=device)
        store.images.reader.close()
        out[name] = (np.asarray(probs[0], np.float64), np.asarray(logits[0], np.float64))
    return out


def clip_scores(
    bundle: Bundle, path: str | Path, main: dict[str, np.ndarray], fixed: Outputs | None = None
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str, dict[str, np.ndarray]]:
    """Class probabilities and clip logits of every model of the bundle (:func:`cnn_outputs`,
    :func:`model_outputs`; ``fixed``: those computed apart, the :func:`video_outputs`) for the
    video ``path`` whose main subject is ``main`` (``has_face``, ``logits`` and the
    :func:`frame_outputs`), the audio status (see :func:`clip_inputs`) and the models' input
    arrays."""
    outputs = cnn_outputs(bundle, main) | dict(fixed or {})
    arrays, status = clip_inputs(bundle, path, main) if bundle.models else ({}, "not_used")
    if bundle.models:
        outputs |= model_outputs(bundle, arrays)
    scores = {name: p for name, (p, _) in outputs.items()}
    logits = {name: z for name, (_, z) in outputs.items()}
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
    main: dict[str, np.ndarray],
    *,
    window: int,
    hop: int = 5,
    fixed: Outputs | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame ``audio`` and ``fused`` probabilities ``[T, 7]`` (those the bundle has): every
    model scored on the ``window`` frames centred on every ``hop``-th frame (the face CNNs: their
    aggregate over the window's face frames, the training prior without any; ``fixed``: scores
    of the whole clip, the video networks'), fused by the bundle's late fusion, linearly
    interpolated in between. A window at least as long as the clip gives the clip's own scores on
    every frame."""
    n = len(main["has_face"])
    if not bundle.models or n == 0:
        return {}
    audio_name = audio_model(bundle)
    norms = model_norms(bundle)  # once, not per window
    centres = np.unique(np.r_[np.arange(0, n, max(1, hop)), n - 1])
    rows: dict[str, list[np.ndarray]] = {"audio": [], "fused": []}
    for c in centres:
        a = int(np.clip(c - window // 2, 0, max(0, n - window)))
        span = (a, min(n, a + window))
        outputs = (
            cnn_outputs(bundle, main, span) | dict(fixed or {}) | model_outputs(bundle, arrays, span, norms)
        )
        scores = {name: p for name, (p, _) in outputs.items()}
        logits = {name: z for name, (_, z) in outputs.items()}
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
