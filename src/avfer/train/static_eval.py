"""The static evaluation of the FER2013 image models: PublicTest (the selection split: pre-training
chose each epoch on it) and PrivateTest (held out) accuracy, the
per-class report (scikit-learn ``classification_report``), the top-2 analysis (the share of
errors whose second choice is right) and the ensemble of the models (mean probabilities).

Models are ``model.pt`` files of :mod:`avfer.models.face` (e.g. ``pretrain/<backbone>/model.pt``);
each takes the 48x48 grey FER2013 images through its own input pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import classification_report

from avfer.data.frames import batch_loader
from avfer.data.static import read_fer2013
from avfer.errors import AvferError
from avfer.io.atomic import atomic_path, write_json
from avfer.labels import EMOTIONS
from avfer.metrics import compute_metrics
from avfer.models.face import load_face_model
from avfer.train.loop import predict, resolve_device

log = logging.getLogger(__name__)

FER_SPLITS = {"PublicTest": "val", "PrivateTest": "test"}
# pre-training chose each model's epoch on PublicTest (its val): only PrivateTest is held out
FER_ROLES = {
    "PublicTest": "selection (pre-training chose the epoch on it: optimistic)",
    "PrivateTest": "held out",
}


def top2_analysis(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Of the wrongly classified images, how many have the true class as second choice."""
    order = np.argsort(-probs, axis=1)
    wrong = order[:, 0] != y
    second = wrong & (order[:, 1] == y)
    n_wrong = int(wrong.sum())
    return {
        "errors": n_wrong,
        "second_choice_right": int(second.sum()),
        "share_of_errors": float(second.sum() / n_wrong) if n_wrong else None,
        "top2_accuracy": float(np.mean((order[:, 0] == y) | (order[:, 1] == y))),
    }


def split_scores(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy, UAR, macro F1, confusion, the per-class report and the top-2 analysis."""
    pred = probs.argmax(axis=1)
    report = classification_report(
        y, pred, labels=range(len(EMOTIONS)), target_names=EMOTIONS, output_dict=True, zero_division=0
    )
    return {**compute_metrics(y, pred), "report": report, "top2": top2_analysis(probs, y)}


def _report_text(name: str, split: str, probs: np.ndarray, y: np.ndarray) -> str:
    text = classification_report(
        y, probs.argmax(1), labels=range(len(EMOTIONS)), target_names=EMOTIONS, digits=3, zero_division=0
    )
    top2 = top2_analysis(probs, y)
    share = "n/a" if top2["share_of_errors"] is None else f"{top2['share_of_errors']:.3f}"
    role = FER_ROLES[split]
    return f"== {name} - FER2013 {split} ({role})\n{text}second choice right in {share} of the errors\n"


def evaluate_static(
    models: Mapping[str, str | Path],
    fer2013_csv: str | Path,
    *,
    out_json: str | Path,
    out_report: str | Path,
    device: str = "auto",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Score every model (name → model.pt) and their ensemble on FER2013 PublicTest and
    PrivateTest; write ``evaluation.json`` and a plain-text per-class report."""
    if not models:
        raise AvferError("static evaluation needs at least one model")
    images, rows = read_fer2013(fer2013_csv, size=48, chans=1)
    present = {name: split for name, split in FER_SPLITS.items() if (rows["split"] == split).any()}
    if not present:
        raise AvferError(f"{fer2013_csv}: no PublicTest or PrivateTest rows (Usage column) to evaluate on")
    dev = resolve_device(device)
    probs: dict[str, dict[str, np.ndarray]] = {}
    targets = {}
    for fer_name, split in present.items():
        idx = np.flatnonzero((rows["split"] == split).to_numpy())
        targets[fer_name] = np.array([EMOTIONS.index(x) for x in rows["label"].iloc[idx]])
        for name, path in models.items():
            model, _ = load_face_model(path, dev)
            loader = batch_loader(images[idx], targets[fer_name], batch_size=batch_size)
            logits, _ = predict(model, loader, dev)
            probs.setdefault(name, {})[fer_name] = torch.softmax(torch.from_numpy(logits).double(), 1).numpy()
    roles = {s: FER_ROLES[s] for s in present}
    result: dict[str, Any] = {"csv": str(fer2013_csv), "roles": roles, "models": {}, "ensemble": {}}
    texts = []
    for name in models:
        result["models"][name] = {
            s: {**split_scores(probs[name][s], targets[s]), "role": roles[s]} for s in present
        }
        texts += [_report_text(name, s, probs[name][s], targets[s]) for s in present]
    if len(models) > 1:
        for s in present:
            mean = np.mean([probs[name][s] for name in models], axis=0)
            result["ensemble"][s] = {**split_scores(mean, targets[s]), "role": roles[s]}
            texts.append(_report_text(f"ensemble ({', '.join(models)})", s, mean, targets[s]))
    for name, scores in [*result["models"].items(), ("ensemble", result["ensemble"])]:
        for s, m in scores.items():
            log.info("%s FER2013 %s: accuracy %.4f (n=%d, %s)", name, s, m["accuracy"], m["n"], m["role"])
    write_json(out_json, result)
    with atomic_path(out_report) as tmp:
        Path(tmp).write_text("\n".join(texts))
    return result
