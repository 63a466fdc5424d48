"""The one evaluation format of every model: per-clip predictions and ``metrics.json``.

``predictions.csv``: ``clip_id, split, label, status, pred, p_Angry ... p_Surprise`` (canonical
order; ``label`` is '' for unlabelled test clips), then ``z_Angry ... z_Surprise``, the clip
logits, when the model gives them (``fusion.scores: logits``). ``status`` is ``ok`` when the
model saw the clip, else why not (``no_face``, ``no_audio``, ``no_video``, ``failed``): such a clip gets the
one fallback of every model, the training clips' class frequencies
(:func:`avfer.train.common.train_prior`). ``metrics.json``: for each labelled split
(train, dev, val, test) ``{"n", "accuracy", "uar", "macro_f1", "confusion", "n_fallback",
"seen"}``: the metrics over all clips (fallbacks counted as predicted), ``n_fallback`` clips
with a fallback, and ``seen`` the same metrics over the clips the model could see only.
``confusion`` is 7x7 in canonical order (rows true, columns predicted).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, recall_score

from avfer.errors import AvferError
from avfer.io.atomic import atomic_path, write_json
from avfer.labels import EMOTIONS, NUM_CLASSES

PROB_COLUMNS = [f"p_{e}" for e in EMOTIONS]
LOGIT_COLUMNS = [f"z_{e}" for e in EMOTIONS]
PRED_COLUMNS = ["clip_id", "split", "label", "status", "pred", *PROB_COLUMNS]
EVAL_SPLITS = ("train", "dev", "val", "test")


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, Any]:
    """Accuracy, UAR (mean recall) and macro F1 over the classes present in ``y_true``,
    and the full 7x7 confusion matrix."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    if y_true.size == 0:
        raise AvferError("cannot compute metrics on zero clips")
    present = np.unique(y_true)
    return {
        "n": int(y_true.size),
        "accuracy": float(np.mean(y_true == y_pred)),
        "uar": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=np.arange(NUM_CLASSES)).tolist(),
    }


def predictions_frame(
    clip_ids: Sequence[str],
    splits: Sequence[str],
    labels: Sequence[str],
    probs: np.ndarray,
    statuses: Sequence[str] | None = None,
    logits: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-clip predictions from class probabilities (rows sum to 1), canonical column order;
    ``statuses`` default to ``ok`` (the model saw every clip); ``logits`` (same shape as
    ``probs``) become the ``z_`` columns."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES or probs.shape[0] != len(clip_ids):
        raise ValueError(f"probs must be [{len(clip_ids)}, {NUM_CLASSES}], got {probs.shape}")
    df = pd.DataFrame({"clip_id": list(clip_ids), "split": list(splits), "label": list(labels)})
    df["status"] = list(statuses) if statuses is not None else "ok"
    df["pred"] = [EMOTIONS[i] for i in probs.argmax(axis=1)]
    df[PROB_COLUMNS] = probs
    if logits is not None:
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape != probs.shape:
            raise ValueError(f"logits must be {probs.shape} like probs, got {logits.shape}")
        df[LOGIT_COLUMNS] = logits
    return df


def log_prior_logits(prior: np.ndarray) -> np.ndarray:
    """Logits whose softmax is ``prior`` (the fallback of a clip a model cannot see)."""
    return np.log(np.clip(np.asarray(prior, dtype=np.float64), 1e-12, None))


def write_predictions(path: str | Path, df: pd.DataFrame) -> None:
    """Atomically write a predictions frame as CSV."""
    with atomic_path(path) as tmp:
        columns = PRED_COLUMNS + (LOGIT_COLUMNS if all(c in df.columns for c in LOGIT_COLUMNS) else [])
        df.loc[:, columns].to_csv(tmp, index=False, float_format="%.6g")


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read a ``predictions.csv``; fail naming the file if it is not in the shared format."""
    text = {"clip_id": str, "split": str, "label": str, "status": str}
    df = pd.read_csv(path, dtype=text, keep_default_na=False)
    missing = [c for c in PRED_COLUMNS if c not in df.columns]
    if missing:
        raise AvferError(f"{path}: predictions file lacks column(s) {missing}")
    return df


def _frame_metrics(part: pd.DataFrame) -> dict[str, Any]:
    y_true = [EMOTIONS.index(x) for x in part["label"]]
    return compute_metrics(y_true, part[PROB_COLUMNS].to_numpy().argmax(axis=1))


def evaluate_predictions(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Metrics for every split of ``df`` that has labels (unlabelled clips are ignored): over all
    clips, and (``seen``) over the clips whose ``status`` is ``ok``; ``n_fallback`` the others."""
    out: dict[str, dict[str, Any]] = {}
    for split in EVAL_SPLITS:
        part = df[(df["split"] == split) & (df["label"] != "")]
        if len(part):
            seen = part["status"] == "ok" if "status" in part.columns else np.ones(len(part), bool)
            out[split] = _frame_metrics(part)
            out[split]["n_fallback"] = int((~seen).sum())
            out[split]["seen"] = _frame_metrics(part[seen]) if seen.any() else None
    return out


def fallback_clips(df: pd.DataFrame) -> pd.DataFrame:
    """The clips of a predictions frame that got the fallback: ``clip_id, split, label, status``."""
    return df.loc[df["status"] != "ok", ["clip_id", "split", "label", "status"]].reset_index(drop=True)


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """Atomically write ``metrics.json``."""
    write_json(path, metrics)


def plot_confusion(confusion: Sequence[Sequence[int]], path: str | Path, title: str = "") -> None:
    """Save a row-normalised confusion matrix (counts annotated) as an image (SVG/PNG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(confusion, dtype=float)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(NUM_CLASSES), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(NUM_CLASSES), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if conf[i, j]:
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "svg")
    plt.close(fig)
