"""Late (decision-level) fusion of any list of trained models from their ``predictions.csv``.

Methods (each a :class:`FusionRule` = a ``(models, classes)`` weight matrix applied to the
models' votes or scores, fitted on labelled validation clips):

* ``majority_vote``: one vote per model (ties broken by the summed scores).
* ``accuracy_weighted_predictions``: votes weighted by each model's accuracy.
* ``accuracy_weighted_scores``: probabilities weighted by each model's accuracy.
* ``class_weighted_scores``: probability of class c weighted by the model's F1 on class c.
* ``weight_search``: one weight per model, grid search over the simplex (:mod:`.search`).
* ``class_weight_search``: one weight per model and class, coordinate ascent from ``weight_search``.
* ``equal_weight_scores``: the plain mean of the scores (with logits: the thesis's equal-weight logits).
* ``accuracy_sqrt_class_weighted``: the score of class c weighted by the model's accuracy x the
  square root of its recall on class c.
* ``least_squares`` / ``ridge_regression``: one weight per model and class, the linear regression
  (scikit-learn ``LinearRegression`` / ``RidgeCV``, alpha by its efficient leave-one-out CV) of the
  one-hot labels on the models' scores of that class; K-fold cross-validated like every method.

Scores are the models' probabilities or, with ``fusion.scores: logits``, their clip logits (the
``z_`` columns; the thesis's method 2 is ``accuracy_weighted_scores`` on logits). Fused logits
and regression outputs become probabilities by a softmax.

Every method is also cross-validated over the validation clips (stratified K folds: fit on
K-1 folds, predict the held-out fold), so each has an estimate that was not fitted to itself;
``auto`` picks the method with the best cross-validated objective. Picking the best of several
cross-validated scores is itself a fit, so the reported estimate of the whole procedure is
*nested* (:func:`nested_cross_validate`): in each outer fold the method and its weights are
chosen on the other folds only, and the held-out fold is predicted once.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, recall_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from avfer.errors import AvferError
from avfer.fusion.search import search_class_weights, search_weights
from avfer.labels import EMOTIONS, NUM_CLASSES
from avfer.metrics import LOGIT_COLUMNS, PROB_COLUMNS, compute_metrics, read_predictions

log = logging.getLogger(__name__)

METHODS = (
    "majority_vote",
    "accuracy_weighted_predictions",
    "accuracy_weighted_scores",
    "class_weighted_scores",
    "weight_search",
    "class_weight_search",
    "equal_weight_scores",
    "accuracy_sqrt_class_weighted",
    "least_squares",
    "ridge_regression",
)
REGRESSIONS = ("least_squares", "ridge_regression")
SCORE_KINDS = ("probabilities", "logits")
RIDGE_ALPHAS = tuple(10.0**k for k in range(-3, 4))


@dataclass
class FusionRule:
    """A fitted late-fusion rule: ``weights`` (models, classes) over votes or scores."""

    method: str
    mode: str  # "votes" or "scores"
    weights: np.ndarray
    softmax: bool = False  # fused scores are logits / regression outputs, not probabilities

    def combine(self, scores: np.ndarray) -> np.ndarray:
        """The weighted sum (clips, classes) of the votes or scores (models, clips, classes)."""
        if self.mode == "votes":
            votes = np.eye(scores.shape[2])[scores.argmax(axis=2)]  # (M, N, C)
            fused = np.einsum("mc,mnc->nc", self.weights, votes)
            return fused + 1e-6 * np.einsum("mc,mnc->nc", self.weights, scores)
        return np.einsum("mc,mnc->nc", self.weights, scores)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Fused class probabilities (clips, classes), rows summing to 1, from scores (models,
        clips, classes): the normalised weighted sum, or its softmax for logits / regressions."""
        fused = self.combine(scores)
        if self.softmax and self.mode == "scores":
            z = np.exp(fused - fused.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        return fused / np.maximum(fused.sum(axis=1, keepdims=True), 1e-12)

    def model_weights(self) -> np.ndarray:
        """One weight per model (the class-average of ``weights``, normalised to sum 1)."""
        w = self.weights.mean(axis=1)
        return w / max(w.sum(), 1e-12)


def _columns(w: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(w, dtype=np.float64)[:, None], NUM_CLASSES, axis=1)


def regression_weights(scores: np.ndarray, targets: np.ndarray, method: str) -> np.ndarray:
    """Weights (models, classes) regressing each class's ``targets`` (clips, classes) on the
    models' scores of that class (no intercept): ``least_squares`` (``LinearRegression``) or
    ``ridge_regression`` (``RidgeCV``, alpha of :data:`RIDGE_ALPHAS` by leave-one-out CV)."""
    from sklearn.linear_model import LinearRegression, RidgeCV

    n_models, _, n_classes = scores.shape
    w = np.zeros((n_models, n_classes))
    for c in range(n_classes):
        x, t = scores[:, :, c].T, targets[:, c]
        if method == "least_squares":
            reg = LinearRegression(fit_intercept=False)
        else:
            reg = RidgeCV(alphas=RIDGE_ALPHAS, fit_intercept=False)
        w[:, c] = reg.fit(x, t).coef_
    return w


def fit_rule(
    method: str,
    scores: np.ndarray,
    y: np.ndarray,
    *,
    divisions: int = 20,
    metric: str = "accuracy",
    rounds: int = 2,
    chunk: int = 4096,
    logits: bool = False,
) -> FusionRule:
    """Fit ``method`` on scores (models, clips, classes) and labels (clips,); ``logits``: the
    scores are logits (the fused scores get a softmax)."""
    rule = _fit_rule(method, scores, y, divisions=divisions, metric=metric, rounds=rounds, chunk=chunk)
    rule.softmax = logits or method in REGRESSIONS
    return rule


def _fit_rule(
    method: str,
    scores: np.ndarray,
    y: np.ndarray,
    *,
    divisions: int,
    metric: str,
    rounds: int,
    chunk: int,
) -> FusionRule:
    n_models = scores.shape[0]
    preds = scores.argmax(axis=2)
    if method == "majority_vote":
        return FusionRule(method, "votes", np.full((n_models, NUM_CLASSES), 1.0 / n_models))
    if method in ("accuracy_weighted_predictions", "accuracy_weighted_scores"):
        acc = (preds == y[None, :]).mean(axis=1)
        acc = acc / acc.sum() if acc.sum() > 0 else np.full(n_models, 1.0 / n_models)
        return FusionRule(method, "votes" if method.endswith("predictions") else "scores", _columns(acc))
    if method == "class_weighted_scores":
        f1 = np.stack(
            [f1_score(y, p, labels=np.arange(NUM_CLASSES), average=None, zero_division=0) for p in preds]
        )  # (M, C)
        total = f1.sum(axis=0, keepdims=True)
        w = np.where(total > 0, f1 / np.where(total > 0, total, 1), 1.0 / n_models)
        return FusionRule(method, "scores", w)
    if method in ("weight_search", "class_weight_search"):
        best = search_weights(scores, y, divisions=divisions, metric=metric, chunk=chunk)
        if method == "weight_search":
            return FusionRule(method, "scores", _columns(best.weights))
        w, _ = search_class_weights(
            scores, y, best.weights, divisions=divisions, metric=metric, rounds=rounds, chunk=chunk
        )
        return FusionRule(method, "scores", w)
    if method == "equal_weight_scores":
        return FusionRule(method, "scores", np.full((n_models, NUM_CLASSES), 1.0 / n_models))
    if method == "accuracy_sqrt_class_weighted":
        acc = (preds == y[None, :]).mean(axis=1)  # (M,)
        recall = np.stack(
            [recall_score(y, p, labels=np.arange(NUM_CLASSES), average=None, zero_division=0) for p in preds]
        )  # (M, C)
        w = acc[:, None] * np.sqrt(recall)
        total = w.sum(axis=0, keepdims=True)
        return FusionRule(
            method, "scores", np.where(total > 0, w / np.where(total > 0, total, 1), 1.0 / n_models)
        )
    if method in REGRESSIONS:
        targets = np.eye(NUM_CLASSES)[y]
        return FusionRule(method, "scores", regression_weights(scores, targets, method))
    raise AvferError(f"late fusion method {method!r} is not one of {', '.join(METHODS)}")


def _summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("n", "accuracy", "uar", "macro_f1", "confusion")}


def cv_folds(
    y: np.ndarray, folds: int, seed: int, groups: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(fit, held-out)`` index pairs over the clips ``y`` (at most as many folds as
    the largest class has clips, or as there are ``groups``; none when that is below 2); with
    ``groups`` (one per clip: speaker / movie) each group is in one held-out fold only."""
    k = min(folds, int(np.bincount(y, minlength=NUM_CLASSES).max())) if len(y) else 0
    if groups is not None:
        k = min(k, len(np.unique(groups)))
    if k < 2:
        return []
    cv = (
        StratifiedKFold(k, shuffle=True, random_state=seed)
        if groups is None
        else StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes with fewer clips than folds
        return [(a, b) for a, b in cv.split(np.zeros(len(y)), y, groups) if len(b)]


_NO_ESTIMATE = {"accuracy": None, "uar": None, "macro_f1": None, "folds": 0, "per_fold": []}


def _held_out_metrics(
    y: np.ndarray, held_out: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    per_fold = [float(np.mean(held_out[idx] == y[idx])) for _, idx in splits]
    return {**_summary(compute_metrics(y, held_out)), "folds": len(splits), "per_fold": per_fold}


def cross_validate(
    method: str,
    scores: np.ndarray,
    y: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
    **fit_kw: Any,
) -> dict[str, Any]:
    """Stratified K-fold estimate of ``method``: fit on K-1 folds, predict the held-out fold
    (whole ``groups`` per fold when given, :func:`cv_folds`).

    Returns the metrics of the pooled held-out predictions plus ``folds`` and ``per_fold``
    accuracies; ``None``-valued metrics when there are too few clips per class for 2 folds.
    """
    splits = cv_folds(y, folds, seed, groups)
    if not splits:
        return dict(_NO_ESTIMATE)
    held_out = np.empty(len(y), dtype=int)
    for fit_idx, test_idx in splits:
        rule = fit_rule(method, scores[:, fit_idx], y[fit_idx], **fit_kw)
        held_out[test_idx] = rule.apply(scores[:, test_idx]).argmax(axis=1)
    return _held_out_metrics(y, held_out, splits)


def select_method(
    methods: Sequence[str],
    scores: np.ndarray,
    y: np.ndarray,
    *,
    objective: str,
    folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    **fit_kw: Any,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The method with the best cross-validated ``objective`` on these clips (ties: the earlier in
    ``methods``) and every method's estimate; one method is returned without cross-validating."""
    if len(methods) == 1:
        return methods[0], {}
    cv = {m: cross_validate(m, scores, y, folds=folds, seed=seed, groups=groups, **fit_kw) for m in methods}
    order = list(methods)
    best = max(
        order, key=lambda m: (cv[m][objective] if cv[m][objective] is not None else -1.0, -order.index(m))
    )
    return best, cv


def nested_predictions(
    methods: Sequence[str],
    scores: np.ndarray,
    y: np.ndarray,
    outer: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    objective: str,
    folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    **fit_kw: Any,
) -> tuple[np.ndarray, list[str]]:
    """Held-out class of every clip when, in each ``outer`` fold, the method (:func:`select_method`)
    and its weights are chosen on the other folds only; and the method each fold chose."""
    held_out = np.empty(len(y), dtype=int)
    chosen = []
    for fit_idx, test_idx in outer:
        s_fit, y_fit = scores[:, fit_idx], y[fit_idx]
        g_fit = None if groups is None else groups[fit_idx]
        best, _ = select_method(
            methods, s_fit, y_fit, objective=objective, folds=folds, seed=seed, groups=g_fit, **fit_kw
        )
        rule = fit_rule(best, s_fit, y_fit, **fit_kw)
        held_out[test_idx] = rule.apply(scores[:, test_idx]).argmax(axis=1)
        chosen.append(best)
    return held_out, chosen


def nested_cross_validate(
    methods: Sequence[str],
    scores: np.ndarray,
    y: np.ndarray,
    *,
    objective: str = "accuracy",
    folds: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
    **fit_kw: Any,
) -> dict[str, Any]:
    """Nested estimate of "pick the best of ``methods`` by CV, then fit it": metrics of the pooled
    held-out predictions of :func:`nested_predictions`, ``per_fold`` accuracies and ``chosen``
    (whole ``groups`` per fold, outer and inner, when given)."""
    outer = cv_folds(y, folds, seed, groups)
    if not outer:
        return {**_NO_ESTIMATE, "chosen": []}
    held_out, chosen = nested_predictions(
        methods, scores, y, outer, objective=objective, folds=folds, seed=seed, groups=groups, **fit_kw
    )
    return {**_held_out_metrics(y, held_out, outer), "chosen": chosen}


@dataclass
class ScoreTable:
    """Aligned predictions of several models: clip ids, splits, labels, scores (M, N, C) and the
    fused status of each clip (:func:`fused_status`)."""

    models: list[str]
    clip_ids: list[str]
    splits: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    statuses: np.ndarray | None = None

    def _labelled_index(self, split: str) -> np.ndarray:
        return np.flatnonzero((self.splits == split) & (self.labels != ""))

    def labelled(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores (M, n, C) and class indices (n,) of the labelled clips of ``split``."""
        idx = self._labelled_index(split)
        y = np.array([EMOTIONS.index(label) for label in self.labels[idx]], dtype=int)
        return self.scores[:, idx], y

    def groups_of(self, split: str, groups: Mapping[str, str] | None) -> np.ndarray | None:
        """The group (speaker / movie) of each labelled clip of ``split``, in :meth:`labelled`'s
        order, when some of them have one (a clip without one is its own group); else None."""
        ids = [self.clip_ids[i] for i in self._labelled_index(split)]
        named = [(groups or {}).get(c, "") for c in ids]
        if not any(named):
            return None
        return np.array([f"g:{g}" if g else f"c:{c}" for c, g in zip(ids, named, strict=True)])


STATUS_ORDER = ("failed", "no_video", "no_face", "no_audio")
"""Which fallback a fused clip reports when no model saw it: the first any model says."""


def fused_status(statuses: np.ndarray) -> np.ndarray:
    """Per clip of ``statuses`` (M, N) (each model's ``status``): ``ok`` when any model saw the
    clip, else the first of :data:`STATUS_ORDER` that a model gives it (the fusion of fallbacks is
    a fallback too)."""
    statuses = np.asarray(statuses, dtype=object)
    out = np.full(statuses.shape[1], "ok", dtype=object)
    blind = ~(statuses == "ok").any(axis=0)
    for status in reversed(STATUS_ORDER):
        out[blind & (statuses == status).any(axis=0)] = status
    unknown = blind & (out == "ok")
    out[unknown] = statuses[0, unknown]
    return out.astype(str)


def load_scores(paths: Mapping[str, str], kind: str = "probabilities") -> ScoreTable:
    """Read every model's predictions.csv and align them on the clips they all share; ``kind``
    ``probabilities`` (``p_`` columns) or ``logits`` (``z_`` columns)."""
    if not paths:
        raise AvferError("late fusion needs at least one model (fusion.models)")
    if kind not in SCORE_KINDS:
        raise AvferError(f"fusion.scores {kind!r} is not one of {', '.join(SCORE_KINDS)}")
    frames = {name: read_predictions(p).set_index("clip_id") for name, p in paths.items()}
    columns = PROB_COLUMNS if kind == "probabilities" else LOGIT_COLUMNS
    for (name, f), path in zip(frames.items(), paths.values(), strict=True):
        if not all(c in f.columns for c in columns):
            raise AvferError(
                f"{path}: {name} has no logit columns (z_*) for fusion.scores: logits; re-run it"
            )
    first = next(iter(frames.values()))
    common = [c for c in first.index if all(c in f.index for f in frames.values())]
    for name, f in frames.items():
        if len(f) != len(common):
            lost = len(f) - len(common)
            log.warning("%s: %d of its %d clips are not in every fused model", name, lost, len(f))
    val = first.loc[common, "split"] == "val"
    if not val.any():
        raise AvferError("the fused models share no validation clip")
    scores = np.stack([f.loc[common, columns].to_numpy(dtype=np.float64) for f in frames.values()])
    return ScoreTable(
        list(frames),
        list(common),
        first.loc[common, "split"].to_numpy(dtype=str),
        first.loc[common, "label"].to_numpy(dtype=str),
        scores,
        fused_status(np.stack([f.loc[common, "status"].to_numpy(dtype=str) for f in frames.values()])),
    )


def read_truth(path: str) -> dict[str, str]:
    """Hidden test labels: a CSV with ``clip_id`` and ``label`` (or ``emotion``) columns (only the
    ``test`` rows when it has a ``split`` column, like the demo's ``demo_truth.csv``)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "split" in df.columns:
        df = df[df["split"] == "test"]
    col = next((c for c in ("label", "emotion") if c in df.columns), None)
    if "clip_id" not in df.columns or col is None:
        raise AvferError(f"{path}: truth file needs columns clip_id and label")
    return dict(zip(df["clip_id"], df[col], strict=True))


def truth_metrics(
    clip_ids: Sequence[str], preds: np.ndarray, truth: Mapping[str, str]
) -> dict[str, Any] | None:
    """Metrics of predictions (class indices) on the clips that have a hidden label."""
    pairs = [(EMOTIONS.index(truth[c]), int(p)) for c, p in zip(clip_ids, preds, strict=True) if truth.get(c)]
    if not pairs:
        return None
    y_true, y_pred = zip(*pairs, strict=True)
    return _summary(compute_metrics(y_true, y_pred))
