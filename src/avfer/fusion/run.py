"""The ``fuse_late`` and ``summarize_models`` stages: fit every late-fusion method on the
validation clips, cross-validate them, pick one, and write ``late_fusion.json``, the fused
``predictions.csv`` / ``metrics.json``, the EmotiW submission folder and the summary table."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from avfer.errors import AvferError
from avfer.fusion.late import (
    METHODS,
    FusionRule,
    cross_validate,
    fit_rule,
    load_scores,
    read_truth,
    truth_metrics,
)
from avfer.fusion.search import simplex_divisions, simplex_size
from avfer.io.atomic import atomic_path, write_json
from avfer.labels import EMOTIONS
from avfer.metrics import (
    compute_metrics,
    evaluate_predictions,
    plot_confusion,
    predictions_frame,
    read_predictions,
    write_metrics,
    write_predictions,
)
from avfer.models.specs import parse_model_name

log = logging.getLogger(__name__)


def _brief(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("accuracy", "uar", "macro_f1", "confusion")}


def fit_divisions(n_models: int, step: float, max_points: int) -> int:
    """Grid divisions for ``step``, coarsened until the simplex has at most ``max_points`` points."""
    divisions = simplex_divisions(step)
    while divisions > 1 and simplex_size(n_models, divisions) > max_points:
        divisions -= 1
    if divisions != simplex_divisions(step):
        log.warning(
            "%d models at step %g give %d weight vectors (> fusion.max_points %d); using step 1/%d",
            n_models,
            step,
            simplex_size(n_models, simplex_divisions(step)),
            max_points,
            divisions,
        )
    return divisions


def write_submission(folder: str | Path, predictions: Mapping[str, str]) -> None:
    """EmotiW submission: one ``<clip_id>.txt`` per test clip holding its label (written atomically)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for clip_id, label in predictions.items():
        (tmp / f"{clip_id}.txt").write_text(label + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def run_late_fusion(
    predictions: Mapping[str, str],
    *,
    out_json: str | Path,
    out_predictions: str | Path,
    out_metrics: str | Path,
    out_submission: str | Path,
    out_confusion: str | Path | None = None,
    methods: Sequence[str] = METHODS,
    method: str = "auto",
    objective: str = "accuracy",
    step: float = 0.05,
    max_points: int = 500_000,
    folds: int = 5,
    rounds: int = 2,
    chunk: int = 4096,
    seed: int = 0,
    truth: str | None = None,
) -> dict[str, Any]:
    """Fuse the models whose ``predictions`` (model → predictions.csv) are given; write the outputs.

    Every method in ``methods`` is fitted on all labelled validation clips (``val``, in-sample)
    and cross-validated (``cv``); ``method="auto"`` picks the best ``cv`` ``objective`` (ties: the
    earlier method in ``methods``). ``truth`` (a CSV of hidden test labels) adds ``test`` metrics.
    """
    if method != "auto" and method not in methods:
        raise AvferError(f"fusion.method {method!r} is not in fusion.methods {list(methods)}")
    table = load_scores(predictions)
    scores_val, y_val = table.labelled("val")
    divisions = fit_divisions(len(table.models), step, max_points)
    fit_kw = {"divisions": divisions, "metric": objective, "rounds": rounds, "chunk": chunk}
    rules: dict[str, FusionRule] = {}
    report: dict[str, Any] = {}
    for name in methods:
        start = time.perf_counter()
        rules[name] = fit_rule(name, scores_val, y_val, **fit_kw)
        seconds = time.perf_counter() - start
        in_sample = compute_metrics(y_val, rules[name].apply(scores_val).argmax(axis=1))
        cv = cross_validate(name, scores_val, y_val, folds=folds, seed=seed, **fit_kw)
        report[name] = {
            "weights": dict(zip(table.models, rules[name].model_weights().round(6).tolist(), strict=True)),
            "val": _brief(in_sample),
            "cv": cv,
            "fit_seconds": round(seconds, 4),
        }
        log.info("%s: val %s %.4f, cv %s %s", name, objective, in_sample[objective], objective, cv[objective])
    if method == "auto":
        method = max(methods, key=lambda m: (report[m]["cv"][objective] or -1.0, -methods.index(m)))
    rule = rules[method]

    fused = rule.apply(table.scores)
    frame = predictions_frame(table.clip_ids, table.splits, table.labels, fused)
    write_predictions(out_predictions, frame)
    write_metrics(out_metrics, evaluate_predictions(frame))
    test = frame[frame["split"] == "test"]
    test_predictions = dict(zip(test["clip_id"], test["pred"], strict=True))
    write_submission(out_submission, test_predictions)

    hidden = read_truth(truth) if truth else {}
    is_test = table.splits == "test"
    test_ids = [c for c, t in zip(table.clip_ids, is_test, strict=True) if t]
    models: dict[str, Any] = {}
    for i, name in enumerate(table.models):
        models[name] = {"val": _brief(compute_metrics(y_val, scores_val[i].argmax(axis=1)))}
        if hidden:
            preds = table.scores[i][is_test].argmax(axis=1)
            models[name]["test"] = truth_metrics(test_ids, preds, hidden)
    result: dict[str, Any] = {
        "method": method,
        "objective": objective,
        "weights": report[method]["weights"],
    }
    if method.startswith("class_"):
        result["class_weights"] = {
            m: dict(zip(EMOTIONS, rule.weights[i].round(6).tolist(), strict=True))
            for i, m in enumerate(table.models)
        }
    result.update(
        step=1.0 / divisions,
        grid_points=simplex_size(len(table.models), divisions),
        val=report[method]["val"],
        cv=report[method]["cv"],
    )
    if hidden:
        result["test"] = truth_metrics(test_ids, fused[is_test].argmax(axis=1), hidden)
    result.update(methods=report, models=models, test_predictions=test_predictions)
    if out_confusion:
        plot_confusion(result["val"]["confusion"], out_confusion, f"late fusion ({method}), validation")
    write_json(out_json, result)
    return result


def summarize_models(
    metrics: Mapping[str, str],
    late_fusion: str | Path,
    out_csv: str | Path,
    *,
    predictions: Mapping[str, str] | None = None,
    truth: str | None = None,
) -> pd.DataFrame:
    """One row per model (family, modality, validation accuracy / UAR / macro F1, test accuracy on
    hidden labels when ``truth`` is given) and one for the late fusion (with its CV estimate)."""
    hidden = read_truth(truth) if truth else {}
    fusion = json.loads(Path(late_fusion).read_text())
    rows = []
    for name, path in metrics.items():
        val = json.loads(Path(path).read_text()).get("val", {})
        parsed = parse_model_name(name)
        row = {
            "model": name,
            "family": parsed.family,
            "modality": parsed.modality,
            "val_accuracy": val.get("accuracy"),
            "val_uar": val.get("uar"),
            "val_macro_f1": val.get("macro_f1"),
            "cv_accuracy": None,
            "fusion_weight": fusion["weights"].get(name),
        }
        if hidden and predictions and name in predictions:
            df = read_predictions(predictions[name])
            df = df[df["split"] == "test"]
            probs = df[[f"p_{e}" for e in EMOTIONS]].to_numpy()
            test = truth_metrics(df["clip_id"].tolist(), probs.argmax(axis=1), hidden)
            row["test_accuracy"] = test["accuracy"] if test else None
        rows.append(row)
    rows.append(
        {
            "model": f"late_fusion ({fusion['method']})",
            "family": "late_fusion",
            "modality": "audio-visual",
            "val_accuracy": fusion["val"]["accuracy"],
            "val_uar": fusion["val"]["uar"],
            "val_macro_f1": fusion["val"]["macro_f1"],
            "cv_accuracy": fusion["cv"]["accuracy"],
            "fusion_weight": None,
            **({"test_accuracy": fusion["test"]["accuracy"]} if fusion.get("test") else {}),
        }
    )
    table = pd.DataFrame(rows)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return table
