"""Late fusion: the vectorised simplex search (vs a naive loop, known optima), the rules,
cross-validation on held-out folds, and the fuse_late outputs."""

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

import avfer.fusion.late as late
from avfer.fusion import run_late_fusion, summarize_models
from avfer.fusion.late import FusionRule, cross_validate, fit_rule
from avfer.fusion.search import (
    fused_predictions,
    objective,
    pick_best,
    search_class_weights,
    search_weights,
    simplex_grid,
    simplex_size,
)
from avfer.labels import EMOTIONS
from avfer.metrics import compute_metrics, predictions_frame, write_predictions

C = len(EMOTIONS)


def _random_scores(models, clips, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(C), size=(models, clips))
    return p, rng.integers(0, C, clips)


def _pinned(target, eps=0.02, extra=20, seed=0):
    """Scores of len(target) models whose fused prediction is right on every clip only for weights
    within ``eps`` of ``target`` (two clips per model pin its weight from below and above)."""
    rng = np.random.default_rng(seed)
    m = len(target)
    diffs = []
    for i, t in enumerate(target):
        diffs.append(np.eye(m)[i] - (t - eps))  # w·d > 0  <=>  w_i > t - eps
        diffs.append((t + eps) - np.eye(m)[i])  # w·d > 0  <=>  w_i < t + eps
    scores, y = [], []
    for d in diffs:
        true, other = rng.choice(C, 2, replace=False)
        s = np.zeros((m, C))
        s[:, true], s[:, other] = 0.5 + d / 2, 0.5 - d / 2
        scores.append(s)
        y.append(true)
    for _ in range(extra):  # clips every model gets right
        true = rng.integers(C)
        s = rng.dirichlet(np.ones(C), size=m) * 0.3
        s[:, true] += 0.7
        scores.append(s)
        y.append(true)
    return np.stack(scores, axis=1), np.array(y)


def test_simplex_grid():
    grid = simplex_grid(3, 4)
    assert grid.shape == (simplex_size(3, 4), 3) == (15, 3)
    np.testing.assert_allclose(grid.sum(1), 1)
    assert len({tuple(r) for r in (grid * 4).round().astype(int)}) == 15
    assert simplex_size(6, 20) == 53130 == math.comb(25, 5)
    assert simplex_grid(1, 20).tolist() == [[1.0]]


@pytest.mark.parametrize("target", [(0.5, 0.3, 0.2), (0.15, 0.35, 0.1, 0.4)])
def test_search_finds_the_known_optimum(target):
    scores, y = _pinned(target)
    res = search_weights(scores, y, divisions=20)
    np.testing.assert_allclose(res.weights, target, atol=1e-9)
    assert res.value == 1.0 and res.n_best == 1
    # Any other grid point gets at least one pinning clip wrong.
    grid = simplex_grid(len(target), 20)
    values = objective(fused_predictions(grid, scores), y, "accuracy", C)
    assert (values == 1.0).sum() == 1


@pytest.mark.parametrize("metric", ["accuracy", "uar", "macro_f1"])
def test_vectorised_search_equals_naive_loop(metric):
    scores, y = _random_scores(4, 60, seed=1)
    grid = simplex_grid(4, 10)
    naive = np.array([compute_metrics(y, np.einsum("m,mnc->nc", w, scores).argmax(1))[metric] for w in grid])
    fast = objective(fused_predictions(grid, scores), y, metric, C)
    np.testing.assert_allclose(fast, naive, atol=1e-12)
    res = search_weights(scores, y, divisions=10, metric=metric, chunk=37)  # chunks do not matter
    assert res.value == pytest.approx(naive.max())
    np.testing.assert_array_equal(res.weights, grid[pick_best(naive, grid)])


def test_ties_pick_the_middle_of_the_best_region():
    values = np.array([1.0, 1.0, 1.0, 0.5])
    points = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.8]])
    assert pick_best(values, points) == 1


def test_class_weight_search_never_worse_and_on_the_simplex():
    scores, y = _random_scores(3, 80, seed=2)
    base = search_weights(scores, y, divisions=10)
    w, value = search_class_weights(scores, y, base.weights, divisions=10)
    assert value >= base.value
    np.testing.assert_allclose(w.sum(axis=0), 1)
    assert compute_metrics(y, np.einsum("mc,mnc->nc", w, scores).argmax(1))["accuracy"] == pytest.approx(
        value
    )


def test_rules_by_hand():
    # 3 models, 4 clips; model 2 is always right, models 0 and 1 always say class 0.
    y = np.array([0, 1, 2, 1])
    scores = np.full((3, 4, C), 0.01)
    scores[0, :, 0] = scores[1, :, 0] = 0.9
    scores[2, np.arange(4), y] = 0.9
    vote = fit_rule("majority_vote", scores, y)
    assert vote.apply(scores).argmax(1).tolist() == [0, 0, 0, 0]
    acc = fit_rule("accuracy_weighted_scores", scores, y)
    np.testing.assert_allclose(acc.weights[:, 0], [0.25 / 1.5, 0.25 / 1.5, 1 / 1.5])
    assert acc.apply(scores).argmax(1).tolist() == y.tolist()  # 2/6 x 0.9 < 2/3 x 0.9
    cls = fit_rule("class_weighted_scores", scores, y)
    assert cls.weights[:2, 1].tolist() == [0.0, 0.0] and cls.weights[2, 1] == 1.0  # F1 of class 1
    assert fit_rule("weight_search", scores, y, divisions=4).apply(scores).argmax(1).tolist() == y.tolist()
    fused = FusionRule("x", "scores", np.ones((3, C)) / 3).apply(scores)
    np.testing.assert_allclose(fused.sum(1), 1)


def test_cv_uses_held_out_folds(monkeypatch):
    scores, y = _random_scores(6, 70, seed=3)
    fitted_on = []
    real_fit = late.fit_rule

    def spy(method, s, yy, **kw):
        fitted_on.append(len(yy))
        return real_fit(method, s, yy, **kw)

    monkeypatch.setattr(late, "fit_rule", spy)
    cv = cross_validate("weight_search", scores, y, folds=5, seed=0, divisions=10)
    assert cv["folds"] == 5 and len(fitted_on) == 5 and len(cv["per_fold"]) == 5
    assert sum(70 - n for n in fitted_on) == 70  # every clip held out exactly once
    assert np.sum(cv["confusion"]) == 70


def test_cv_keeps_each_group_in_one_held_out_fold(tmp_path, monkeypatch):
    """Fusion CV with speaker / movie groups: a group's clips are never both fitted and held out
    (cv_folds, cross_validate and the nested estimate), and late_fusion.json says so."""
    scores, y = _random_scores(3, 84, seed=5)
    groups = np.array([f"s{i // 4}" for i in range(84)])  # 21 speakers of 4 clips
    for fit, held in late.cv_folds(y, 5, 0, groups):
        assert not set(groups[fit]) & set(groups[held])
    assert len(late.cv_folds(y, 5, 0, np.array(["a", "b"] * 42))) == 2  # at most one fold a group
    grouped = cross_validate("weight_search", scores, y, folds=5, seed=0, groups=groups, divisions=10)
    assert grouped["folds"] == 5 and np.sum(grouped["confusion"]) == 84
    paths, truth = _write_models(tmp_path)
    ids = pd.read_csv(next(iter(paths.values())), keep_default_na=False)["clip_id"].tolist()
    speakers = {c: f"spk{i % 9}" for i, c in enumerate(ids)}
    seen = []
    real = late.cv_folds

    def record(yy, folds, seed, groups=None):
        seen.append(groups)
        return real(yy, folds, seed, groups)

    monkeypatch.setattr(late, "cv_folds", record)
    result = run_late_fusion(
        paths, out_json=tmp_path / "lf.json", out_predictions=tmp_path / "p.csv",
        out_metrics=tmp_path / "m.json", out_submission=tmp_path / "sub", step=0.1, truth=truth,
        methods=["equal_weight_scores", "weight_search"], groups=speakers,
    )  # fmt: skip
    assert result["protocol"]["fusion_cv"].startswith("grouped") and seen
    assert all(g is not None and set(g) <= {f"g:spk{k}" for k in range(9)} for g in seen)


def test_cv_is_lower_than_in_sample_on_noise():
    gaps, cvs = [], []
    for seed in range(3):  # 6 models of pure noise: per-class weights fit the noise ...
        scores, y = _random_scores(6, 70, seed=seed)
        rule = fit_rule("class_weight_search", scores, y, divisions=10)
        in_sample = compute_metrics(y, rule.apply(scores).argmax(1))["accuracy"]
        cv = cross_validate("class_weight_search", scores, y, folds=5, seed=0, divisions=10)["accuracy"]
        gaps.append(in_sample - cv)
        cvs.append(cv)
    assert np.mean(gaps) > 0.15  # ... which does not carry over to held-out folds
    assert np.mean(cvs) < 0.25  # chance is 1/7


def test_six_models_at_step_005_in_seconds():
    scores, y = _random_scores(6, 383, seed=4)  # the size of AFEW's validation split
    start = time.perf_counter()
    res = search_weights(scores, y, divisions=20)
    assert res.n_points == 53130
    assert time.perf_counter() - start < 30  # ~2-4 s on 2 cores; generous for busy machines


def _write_models(tmp_path):
    """Face-like and voice-like models over the demo design: each alone resolves 4 groups."""
    from synth_caches import FACE, VOICE

    rng = np.random.default_rng(0)
    clips = [(f"{s}_{e}_{k}", s, e) for s in ("val", "test") for e in EMOTIONS for k in range(6)]
    paths = {}
    for name, groups in (("gru_x", FACE), ("audio_mlp", VOICE)):
        probs = []
        for _clip, _split, emo in clips:
            same = np.array([groups[e] == groups[emo] for e in EMOTIONS], dtype=float)
            p = same / same.sum() + rng.uniform(0, 0.05, C)
            probs.append(p / p.sum())
        df = predictions_frame(
            [c[0] for c in clips],
            [c[1] for c in clips],
            [c[2] if c[1] == "val" else "" for c in clips],
            np.stack(probs),
        )
        paths[name] = str(tmp_path / f"{name}.csv")
        write_predictions(paths[name], df)
    truth_path = tmp_path / "truth.csv"
    truth_path.write_text("clip_id,label\n" + "".join(f"{c},{e}\n" for c, s, e in clips if s == "test"))
    truth = str(truth_path)
    return paths, truth


def test_run_late_fusion_outputs(tmp_path):
    paths, truth = _write_models(tmp_path)
    out = tmp_path / "out"
    result = run_late_fusion(
        paths,
        out_json=out / "late_fusion.json",
        out_predictions=out / "fusion" / "predictions.csv",
        out_metrics=out / "fusion" / "metrics.json",
        out_submission=out / "submission",
        out_confusion=out / "fusion" / "confusion.svg",
        step=0.1,
        truth=truth,
    )
    saved = json.loads((out / "late_fusion.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("method", "weights", "val_fitted", "cv", "protocol", "models", "test_predictions", "test"):
        assert key in saved
    assert "val" not in saved and all("val_fitted" in m and "cv" in m for m in saved["methods"].values())
    assert set(saved["weights"]) == {"gru_x", "audio_mlp"}
    assert set(saved["val_fitted"]) >= {"accuracy", "uar", "macro_f1", "confusion"}
    singles = [m["val"]["accuracy"] for m in saved["models"].values()]
    assert max(singles) < 0.7 and saved["val_fitted"]["accuracy"] > max(singles) + 0.25
    assert saved["cv"]["accuracy"] > max(singles) + 0.2 and saved["test"]["accuracy"] > 0.9
    assert len(saved["cv"]["chosen"]) == saved["cv"]["folds"] == 5  # nested: one choice per outer fold
    assert saved["protocol"]["model_selection"] == "val" and saved["protocol"]["fusion_fit"] == "val"
    files = sorted(p.name for p in (out / "submission").iterdir())
    assert len(files) == 42 and files[0].endswith(".txt")
    test_clip = next(iter(saved["test_predictions"]))
    assert (out / "submission" / f"{test_clip}.txt").read_text().strip() == saved["test_predictions"][
        test_clip
    ]
    fused = pd.read_csv(out / "fusion" / "predictions.csv", keep_default_na=False)
    fused_metrics = json.loads((out / "fusion" / "metrics.json").read_text())
    assert len(fused) == 84 and fused_metrics["val_fitted"]["n"] == 42  # in-sample: named so
    assert "val" not in fused_metrics and saved["protocol"]["fusion_cv"] == "stratified folds"
    metrics = {}
    for name, p in paths.items():
        metrics[name] = str(tmp_path / f"{name}.json")
        df = pd.read_csv(p, keep_default_na=False)
        val = df[df.split == "val"]
        m = compute_metrics([EMOTIONS.index(x) for x in val.label], [EMOTIONS.index(x) for x in val.pred])
        (tmp_path / f"{name}.json").write_text(json.dumps({"val": m}))
    table = summarize_models(
        metrics,
        out / "late_fusion.json",
        out / "summary.csv",
        predictions=paths,
        out_fallbacks=out / "fallbacks.csv",
        truth=truth,
    )
    assert list(table["model"])[:2] == ["gru_x", "audio_mlp"] and table["family"].iloc[-1] == "late_fusion"
    assert table["test_accuracy"].iloc[-1] > table["test_accuracy"].iloc[0]
    fusion_row = table.iloc[-1]
    assert fusion_row["val_fitted_accuracy"] == saved["val_fitted"]["accuracy"] and pd.isna(
        fusion_row["val_accuracy"]
    )
    assert fusion_row["cv_accuracy"] == saved["cv"]["accuracy"]
    assert (table["n_fallback"].iloc[:2] == 0).all() and len(pd.read_csv(out / "fallbacks.csv")) == 0


def _fusion_kw(out):
    return {
        "out_json": out / "late_fusion.json",
        "out_predictions": out / "fusion" / "predictions.csv",
        "out_metrics": out / "fusion" / "metrics.json",
        "out_submission": out / "submission",
        "step": 0.1,
    }


def test_test_labels_change_nothing_but_test_metrics(tmp_path):
    """Labelled test clips (from the sheet) are scored, never used: permuting them changes only
    the test metrics, not the method, the weights, the estimates or any fused prediction."""
    paths, truth = _write_models(tmp_path)
    labels = pd.read_csv(truth, keep_default_na=False).set_index("clip_id")["label"]
    rng = np.random.default_rng(1)
    results = {}
    for variant in ("true", "permuted"):
        test_labels = labels.copy()
        if variant == "permuted":
            test_labels[:] = rng.permutation(test_labels.to_numpy())
        labelled = {}
        for name, p in paths.items():
            df = pd.read_csv(p, keep_default_na=False, dtype=str)
            is_test = df["split"] == "test"
            df.loc[is_test, "label"] = test_labels.loc[df.loc[is_test, "clip_id"]].to_numpy()
            labelled[name] = str(tmp_path / f"{variant}_{name}.csv")
            df.to_csv(labelled[name], index=False)
        out = tmp_path / variant
        results[variant] = run_late_fusion(labelled, **_fusion_kw(out))
        results[variant]["fused"] = pd.read_csv(out / "fusion" / "predictions.csv", keep_default_na=False)
    a, b = results["true"], results["permuted"]
    assert a["test"]["accuracy"] > 0.9 and b["test"]["accuracy"] < 0.5
    for key in ("method", "weights", "val_fitted", "cv", "test_predictions"):
        assert a[key] == b[key]
    cols = [c for c in a["fused"].columns if c != "label"]
    pd.testing.assert_frame_equal(a["fused"][cols], b["fused"][cols])


def test_nested_cv_outer_fold_never_sees_its_labels():
    """Permuting the labels of the clips of one outer fold leaves that fold's fused predictions
    unchanged: its method and weights were chosen on the other folds only."""
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(C), 8)
    scores = rng.dirichlet(np.ones(C), size=(3, len(y)))
    scores[0, np.arange(len(y)), y] += 0.6  # one informative model
    scores /= scores.sum(axis=2, keepdims=True)
    outer = late.cv_folds(y, 4, seed=0)
    kw = {"objective": "accuracy", "folds": 3, "seed": 0, "divisions": 10, "metric": "accuracy"}
    methods = ["majority_vote", "accuracy_weighted_scores", "weight_search"]
    base, _ = late.nested_predictions(methods, scores, y, outer, **kw)
    for j, (_, held) in enumerate(outer):
        y_perm = y.copy()
        y_perm[held] = rng.permutation(y[held])
        y_perm[held] = (y_perm[held] + 1) % C  # every held-out label is now wrong
        again, _ = late.nested_predictions(methods, scores, y_perm, outer, **kw)
        assert np.array_equal(again[held], base[held]), f"outer fold {j}"


def test_nested_cv_is_below_the_fitted_score_on_noise():
    """On pure-noise scores the in-sample (val_fitted) accuracy of the best method is far above
    chance, the nested estimate is not: the selection of the method is part of the fit."""
    scores, y = _random_scores(4, 70, seed=5)
    nested = late.nested_cross_validate(
        list(late.METHODS), scores, y, folds=5, seed=0, divisions=10, metric="accuracy"
    )
    fitted = compute_metrics(
        y, fit_rule("class_weight_search", scores, y, divisions=10).apply(scores).argmax(1)
    )
    assert fitted["accuracy"] > nested["accuracy"] + 0.12 and nested["accuracy"] < 0.3


def test_unknown_method_and_bad_step(tmp_path):
    paths, _ = _write_models(tmp_path)
    kw = {k: tmp_path / k for k in ("out_json", "out_predictions", "out_metrics", "out_submission")}
    with pytest.raises(late.AvferError, match="fusion.method 'best'"):
        run_late_fusion(paths, method="best", **kw)
    with pytest.raises(late.AvferError, match="step 0.3 must be 1/n"):
        run_late_fusion(paths, step=0.3, **kw)
