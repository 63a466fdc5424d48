"""Vectorised weight search over the simplex for score-level late fusion.

Scores are ``(models, clips, classes)`` probabilities. Fusion weights ``w`` (one per model,
``w >= 0``, ``sum(w) == 1``) give fused scores ``sum_m w_m P_m``; the search scores every point
of a regular simplex grid (``step`` = 1/n) at once: chunks of weight vectors times the
``(models, clips*classes)`` score matrix (one matmul per chunk), argmax, and the objective
from the predictions. Of equally good points the one nearest to their centroid wins (the middle
of the best region, not its edge).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from avfer.errors import AvferError

METRICS = ("accuracy", "uar", "macro_f1")
_TIE = 1e-12


def simplex_divisions(step: float) -> int:
    """``n`` with ``step == 1/n`` (the step must divide 1)."""
    n = round(1.0 / step)
    if n < 1 or abs(n * step - 1.0) > 1e-6:
        raise AvferError(f"fusion step {step} must be 1/n for a whole number n (e.g. 0.05, 0.1, 0.25)")
    return n


def simplex_size(n_models: int, divisions: int) -> int:
    """Number of grid points ``C(n + M - 1, M - 1)`` of the simplex with ``divisions`` steps."""
    return math.comb(divisions + n_models - 1, n_models - 1)


def simplex_grid(n_models: int, divisions: int) -> np.ndarray:
    """All weight vectors ``(K, n_models)`` with entries in ``{0, 1/n, ..., 1}`` summing to 1
    (stars and bars: each choice of ``M-1`` bar positions among ``n+M-1`` slots is one vector)."""
    if n_models == 1:
        return np.ones((1, 1))
    slots = divisions + n_models - 1
    bars = np.fromiter(
        itertools.chain.from_iterable(itertools.combinations(range(slots), n_models - 1)),
        dtype=np.int64,
    ).reshape(-1, n_models - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), slots)], axis=1)
    return (np.diff(edges, axis=1) - 1) / divisions


def objective(preds: np.ndarray, y: np.ndarray, metric: str, n_classes: int) -> np.ndarray:
    """``metric`` of each row of predictions ``(K, N)`` against labels ``(N,)`` → ``(K,)``.

    UAR and macro F1 average over the classes present in ``y`` (as :func:`avfer.metrics.compute_metrics`).
    """
    correct = preds == y[None, :]
    if metric == "accuracy":
        return correct.mean(axis=1)
    onehot = np.eye(n_classes)[y]  # (N, C)
    true_count = onehot.sum(axis=0)
    present = true_count > 0
    tp = correct.astype(np.float64) @ onehot  # (K, C)
    if metric == "uar":
        return (tp[:, present] / true_count[present]).mean(axis=1)
    if metric == "macro_f1":
        pred_count = np.stack([(preds == c).sum(axis=1) for c in range(n_classes)], axis=1)
        f1 = 2 * tp[:, present] / (pred_count[:, present] + true_count[present])
        return f1.mean(axis=1)
    raise AvferError(f"fusion objective {metric!r} is not one of {', '.join(METRICS)}")


def fused_predictions(weights: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Argmax predictions ``(K, N)`` of ``sum_m weights[k, m] * scores[m]`` for every weight row."""
    m, n, c = scores.shape
    return (weights @ scores.reshape(m, n * c)).reshape(len(weights), n, c).argmax(axis=2)


def pick_best(values: np.ndarray, points: np.ndarray) -> int:
    """Index of the best value; among ties, the point nearest to the ties' centroid."""
    best = np.flatnonzero(values >= values.max() - _TIE)
    if len(best) == 1:
        return int(best[0])
    centre = points[best].mean(axis=0)
    return int(best[np.argmin(((points[best] - centre) ** 2).sum(axis=1))])


@dataclass
class SearchResult:
    """Best weights found, their objective, and how many grid points were scored / tied."""

    weights: np.ndarray
    value: float
    n_points: int
    n_best: int


def search_weights(
    scores: np.ndarray, y: np.ndarray, *, divisions: int = 20, metric: str = "accuracy", chunk: int = 4096
) -> SearchResult:
    """Grid search of one weight per model over the simplex, maximising ``metric``.

    Args:
        scores: (models, clips, classes) class probabilities of each model.
        y: (clips,) true class indices.
    """
    scores = np.asarray(scores, dtype=np.float64)
    grid = simplex_grid(scores.shape[0], divisions)
    values = np.concatenate(
        [
            objective(fused_predictions(grid[i : i + chunk], scores), y, metric, scores.shape[2])
            for i in range(0, len(grid), chunk)
        ]
    )
    k = pick_best(values, grid)
    n_best = int((values >= values.max() - _TIE).sum())
    return SearchResult(grid[k], float(values[k]), len(grid), n_best)


def search_class_weights(
    scores: np.ndarray,
    y: np.ndarray,
    init: np.ndarray,
    *,
    divisions: int = 20,
    metric: str = "accuracy",
    rounds: int = 2,
    chunk: int = 4096,
) -> tuple[np.ndarray, float]:
    """Per-class weights ``(models, classes)`` (each class column on the simplex) by coordinate
    ascent from ``init`` (models,): for each class in turn, every grid point for that class's
    column is scored at once with the other columns fixed; a column changes only if that
    improves the objective. Stops after ``rounds`` passes or a pass without change."""
    scores = np.asarray(scores, dtype=np.float64)
    n_models, _, n_classes = scores.shape
    grid = simplex_grid(n_models, divisions)
    w = np.repeat(np.asarray(init, dtype=np.float64)[:, None], n_classes, axis=1)
    current = float(objective(np.einsum("mc,mnc->nc", w, scores).argmax(1)[None], y, metric, n_classes)[0])
    for _ in range(rounds):
        changed = False
        for c in range(n_classes):
            fused = np.einsum("mc,mnc->nc", w, scores)
            fused[:, c] = -np.inf
            best_other, arg_other = fused.max(axis=1), fused.argmax(axis=1)
            values = []
            for i in range(0, len(grid), chunk):
                sc = grid[i : i + chunk] @ scores[:, :, c]  # (k, N)
                wins = (sc > best_other) | ((sc == best_other) & (c < arg_other))
                values.append(objective(np.where(wins, c, arg_other), y, metric, n_classes))
            vals = np.concatenate(values)
            if vals.max() > current + _TIE:
                w[:, c] = grid[pick_best(vals, grid)]
                current, changed = float(vals.max()), True
        if not changed:
            break
    return w, current
