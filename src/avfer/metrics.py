"""The one evaluation format of every model: per-clip predictions and ``metrics.json``.

``predictions.csv``: ``clip_id, split, label, pred, p_Angry ... p_Surprise`` (canonical order;
``label`` is '' for unlabelled test clips). ``metrics.json``:
``{"val": {"n", "accuracy", "uar", "macro_f1", "confusion"}, ...}`` for each labelled split,
``confusion`` 7x7 in canonical order (rows true, columns predicted).
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
PRED_COLUMNS = ["clip_id", "split", "label", "pred", *PROB_COLUMNS]


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
    clip_ids: Sequence[str], splits: Sequence[str], labels: Sequence[str], probs: np.ndarray
) -> pd.DataFrame:
    """Per-clip predictions from class probabilities (rows sum to 1), canonical column order."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES or probs.shape[0] != len(clip_ids):
        raise ValueError(f"probs must be [{len(clip_ids)}, {NUM_CLASSES}], got {probs.shape}")
    df = pd.DataFrame({"clip_id": list(clip_ids), "split": list(splits), "label": list(labels)})
    df["pred"] = [EMOTIONS[i] for i in probs.argmax(axis=1)]
    df[PROB_COLUMNS] = probs
    return df


def write_predictions(path: str | Path, df: pd.DataFrame) -> None:
    """Atomically write a predictions frame as CSV."""
    with atomic_path(path) as tmp:
        df.loc[:, PRED_COLUMNS].to_csv(tmp, index=False, float_format="%.6g")


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read a ``predictions.csv``; fail naming the file if it is not in the shared format."""
    df = pd.read_csv(path, dtype={"clip_id": str, "split": str, "label": str}, keep_default_na=False)
    missing = [c for c in PRED_COLUMNS if c not in df.columns]
    if missing:
        raise AvferError(f"{path}: predictions file lacks column(s) {missing}")
    return df


def evaluate_predictions(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Metrics for every split of ``df`` that has labels (unlabelled clips are ignored)."""
    out: dict[str, dict[str, Any]] = {}
    for split in ("train", "val", "test"):
        part = df[(df["split"] == split) & (df["label"] != "")]
        if len(part):
            y_true = [EMOTIONS.index(x) for x in part["label"]]
            y_pred = part[PROB_COLUMNS].to_numpy().argmax(axis=1)
            out[split] = compute_metrics(y_true, y_pred)
    return out


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
