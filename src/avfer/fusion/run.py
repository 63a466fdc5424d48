"""The ``fuse_late`` and ``summarize_models`` stages: fit every late-fusion method on the
validation clips, cross-validate them, pick one, and write ``late_fusion.json``, the fused
``predictions.csv`` / ``metrics.json``, the EmotiW submission folder and the summary table.

Every number says what it was fitted on: ``val_fitted`` (the weights were fitted on these very
clips: in-sample, optimistic), ``cv`` (nested cross-validation over the val clips: the method
choice and the weights never saw the clips they are scored on), ``test`` (held-out clips with
labels from the sample sheet or a hidden-truth file, never used for any choice).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from avfer.errors import AvferError
from avfer.fusion.late import (
    METHODS,
    FusionRule,
    ScoreTable,
    cross_validate,
    fit_rule,
    load_scores,
    nested_cross_validate,
    read_truth,
    truth_metrics,
)
from avfer.fusion.search import simplex_divisions, simplex_size
from avfer.io.atomic import write_json
from avfer.labels import EMOTIONS
from avfer.metrics import (
    compute_metrics,
    evaluate_predictions,
    plot_confusion,
    predictions_frame,
    write_metrics,
    write_predictions,
)

log = logging.getLogger(__name__)

# methods with one weight per model and class (reported as class_weights)
CLASS_WEIGHTED = (
    "class_weighted_scores",
    "class_weight_search",
    "accuracy_sqrt_class_weighted",
    "least_squares",
    "ridge_regression",
)


def _brief(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("n", "accuracy", "uar", "macro_f1", "confusion")}


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


def _protocol(table: ScoreTable, grouped: bool) -> dict[str, Any]:
    """What selected, fitted and tested what, from the splits present in the predictions."""
    present = set(table.splits.tolist())
    selection = "dev" if "dev" in present else "val"
    return {
        "model_selection": selection,
        "fusion_fit": "val",
        "fusion_cv": "grouped folds (whole speakers / movies)" if grouped else "stratified folds",
        "test": "test",
        "single_model_val": "held-out" if selection == "dev" else "optimistic (val also selected epochs)",
        "clips": {s: int((table.splits == s).sum()) for s in ("train", "dev", "val", "test") if s in present},
    }


def _test_labels(table: ScoreTable, truth: str | None) -> dict[str, str]:
    """Labels of the test clips: the sheet's (in the predictions), completed by a hidden-truth file."""
    labels = {
        c: lab for c, s, lab in zip(table.clip_ids, table.splits, table.labels, strict=True) if s == "test"
    }
    hidden = read_truth(truth) if truth else {}
    return {c: labels[c] or hidden.get(c, "") for c in labels}


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
    scores: str = "probabilities",
    groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Fuse the models whose ``predictions`` (model → predictions.csv) are given; write the outputs.

    Every method in ``methods`` is fitted on all labelled val clips (``val_fitted``, in-sample)
    and cross-validated (``cv``); ``method="auto"`` picks the best ``cv`` ``objective`` (ties: the
    earlier method). ``scores``: fuse the models' ``probabilities`` or their ``logits``. The
    reported ``cv`` of the result is nested (the choice of the method is
    redone inside each outer fold). Test clips with labels (the sample sheet's, or ``truth``, a
    CSV of hidden labels) give ``test`` metrics; they are never used for any choice. ``groups``
    (clip id → speaker / actor / movie, :func:`avfer.datasets.splits.read_groups`): the
    cross-validation folds keep each group whole when the val clips have groups.
    """
    if method != "auto" and method not in methods:
        raise AvferError(f"fusion.method {method!r} is not in fusion.methods {list(methods)}")
    table = load_scores(predictions, scores)
    scores_val, y_val = table.labelled("val")
    g_val = table.groups_of("val", groups)
    divisions = fit_divisions(len(table.models), step, max_points)
    fit_kw = {"divisions": divisions, "metric": objective, "rounds": rounds, "chunk": chunk}
    fit_kw["logits"] = scores == "logits"
    candidates = list(methods) if method == "auto" else [method]
    rules: dict[str, FusionRule] = {}
    report: dict[str, Any] = {}
    for name in methods:
        start = time.perf_counter()
        rules[name] = fit_rule(name, scores_val, y_val, **fit_kw)
        seconds = time.perf_counter() - start
        in_sample = compute_metrics(y_val, rules[name].apply(scores_val).argmax(axis=1))
        cv = cross_validate(name, scores_val, y_val, folds=folds, seed=seed, groups=g_val, **fit_kw)
        report[name] = {
            "weights": dict(zip(table.models, rules[name].model_weights().round(6).tolist(), strict=True)),
            "val_fitted": _brief(in_sample),
            "cv": cv,
            "fit_seconds": round(seconds, 4),
        }
        log.info(
            "%s: val_fitted %s %.4f, cv %s %s",
            name,
            objective,
            in_sample[objective],
            objective,
            cv[objective],
        )
    if method == "auto":
        method = max(methods, key=lambda m: (report[m]["cv"][objective] or -1.0, -methods.index(m)))
    rule = rules[method]
    nested = nested_cross_validate(
        candidates, scores_val, y_val, objective=objective, folds=folds, seed=seed, groups=g_val, **fit_kw
    )
    log.info("nested cv (%s): %s %s, chosen per fold %s", "auto" if len(candidates) > 1 else method,
             objective, nested[objective], nested["chosen"])  # fmt: skip

    fused = rule.apply(table.scores)
    fused_logits = rule.combine(table.scores) if rule.softmax and rule.mode == "scores" else None
    frame = predictions_frame(
        table.clip_ids, table.splits, table.labels, fused, table.statuses, logits=fused_logits
    )
    test_labels = _test_labels(table, truth)
    in_test = frame["split"] == "test"
    frame.loc[in_test, "label"] = [test_labels[c] for c in frame.loc[in_test, "clip_id"]]
    write_predictions(out_predictions, frame)
    fused_metrics = evaluate_predictions(frame)
    if "val" in fused_metrics:  # the fusion's weights were fitted on these very clips: in-sample
        fused_metrics["val_fitted"] = fused_metrics.pop("val")
    write_metrics(out_metrics, fused_metrics)
    test = frame[frame["split"] == "test"]
    test_predictions = dict(zip(test["clip_id"], test["pred"], strict=True))
    write_submission(out_submission, test_predictions)

    is_test = table.splits == "test"
    test_ids = [c for c, t in zip(table.clip_ids, is_test, strict=True) if t]
    models: dict[str, Any] = {}
    for i, name in enumerate(table.models):
        models[name] = {"val": _brief(compute_metrics(y_val, scores_val[i].argmax(axis=1)))}
        scored = truth_metrics(test_ids, table.scores[i][is_test].argmax(axis=1), test_labels)
        if scored:
            models[name]["test"] = scored
    result: dict[str, Any] = {
        "method": method,
        "selected_by": "cv" if len(candidates) > 1 else "config",
        "objective": objective,
        "scores": scores,
        "weights": report[method]["weights"],
    }
    # the fitted rule itself, unrounded (``weights`` above are its normalised model averages):
    # what a bundle applies to reproduce ``fusion/predictions.csv``
    result["rule"] = {
        "mode": rule.mode,
        "softmax": bool(rule.softmax),
        "weights": {m: rule.weights[i].tolist() for i, m in enumerate(table.models)},
    }
    if method in CLASS_WEIGHTED:
        result["class_weights"] = {
            m: dict(zip(EMOTIONS, rule.weights[i].round(6).tolist(), strict=True))
            for i, m in enumerate(table.models)
        }
    result.update(
        step=1.0 / divisions,
        grid_points=simplex_size(len(table.models), divisions),
        protocol=_protocol(table, g_val is not None),
        val_fitted=report[method]["val_fitted"],
        cv=nested,
    )
    scored = truth_metrics(test_ids, fused[is_test].argmax(axis=1), test_labels)
    if scored:
        result["test"] = scored
    result.update(methods=report, models=models, test_predictions=test_predictions)
    if out_confusion:
        where, shown = ("test", scored) if scored else ("val, nested cv", nested)
        if not shown.get("confusion"):
            where, shown = "val_fitted (in-sample)", result["val_fitted"]
        plot_confusion(shown["confusion"], out_confusion, f"late fusion ({method}): {where}")
    write_json(out_json, result)
    return result
