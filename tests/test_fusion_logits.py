"""Late fusion on logits and the thesis's methods: equal-weight scores, accuracy x sqrt(class
weights), least-squares / ridge regression of model and class weights."""

import json

import numpy as np
import pandas as pd
import pytest

from avfer.errors import AvferError
from avfer.fusion import run_late_fusion
from avfer.fusion.late import METHODS, cross_validate, fit_rule, load_scores, regression_weights
from avfer.labels import EMOTIONS
from avfer.metrics import LOGIT_COLUMNS, predictions_frame, read_predictions, write_predictions

C = len(EMOTIONS)


@pytest.mark.parametrize("method", ["least_squares", "ridge_regression"])
def test_regression_recovers_known_model_and_class_weights(method):
    rng = np.random.default_rng(0)
    m, n = 3, 400
    scores = rng.normal(size=(m, n, C))
    w_true = rng.uniform(-1, 2, size=(m, C))
    targets = np.einsum("mc,mnc->nc", w_true, scores) + rng.normal(scale=0.01, size=(n, C))
    w = regression_weights(scores, targets, method)
    assert w.shape == (m, C)
    assert np.abs(w - w_true).max() < 0.02


def test_regression_rule_weights_the_informative_model():
    rng = np.random.default_rng(1)
    n = 300
    y = rng.integers(0, C, n)
    good = np.eye(C)[y] * 3 + rng.normal(size=(n, C))  # logits that know the label
    noise = rng.normal(size=(n, C)) * 3
    scores = np.stack([good, noise])
    for method in ("least_squares", "ridge_regression"):
        rule = fit_rule(method, scores, y, logits=True)
        assert rule.softmax and np.all(rule.weights[0] > 5 * np.abs(rule.weights[1]))
        fused = rule.apply(scores)
        assert np.allclose(fused.sum(axis=1), 1) and (fused.argmax(1) == y).mean() > 0.9
        assert cross_validate(method, scores, y, folds=5, seed=0)["accuracy"] > 0.9


def test_equal_weight_and_accuracy_sqrt_class_weights_by_hand():
    y = np.array([0, 0, 1, 1])
    # model 0 right on every clip; model 1 right on class 0 only
    s0 = np.eye(C)[y] * 0.9 + 0.1 / C
    s1 = np.eye(C)[[0, 0, 0, 0]] * 0.9 + 0.1 / C
    scores = np.stack([s0, s1])
    eq = fit_rule("equal_weight_scores", scores, y)
    assert np.allclose(eq.apply(scores), scores.mean(axis=0) / scores.mean(axis=0).sum(1, keepdims=True))
    rule = fit_rule("accuracy_sqrt_class_weighted", scores, y)
    # accuracies 1.0 and 0.5; recalls: class 0 (1, 1), class 1 (1, 0)
    assert rule.weights[:, 0] == pytest.approx([1 / 1.5, 0.5 / 1.5])
    assert rule.weights[:, 1] == pytest.approx([1.0, 0.0])
    assert set(METHODS) >= {"equal_weight_scores", "accuracy_sqrt_class_weighted", "least_squares"}


def test_logits_rule_is_a_softmax_of_the_weighted_logits():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2, 5, C))
    y = rng.integers(0, C, 5)
    rule = fit_rule("equal_weight_scores", z, y, logits=True)
    mean = z.mean(axis=0)
    expected = np.exp(mean) / np.exp(mean).sum(axis=1, keepdims=True)
    assert np.allclose(rule.apply(z), expected)


def _write(tmp_path, name, probs, logits, splits, labels):
    ids = [f"c{i:03d}" for i in range(len(splits))]
    df = predictions_frame(ids, splits, labels, probs, logits=logits)
    path = tmp_path / f"{name}.csv"
    write_predictions(path, df)
    return str(path)


def test_predictions_keep_logits_and_fusion_reads_them(tmp_path):
    rng = np.random.default_rng(3)
    n = 70
    y = np.arange(n) % C
    splits = ["val"] * 56 + ["test"] * 14
    labels = [EMOTIONS[i] for i in y]
    paths = {}
    for k, name in enumerate(("cnn_a", "audio_mlp")):
        z = rng.normal(size=(n, C))
        hit = rng.random(n) < 0.6
        z[hit, y[hit]] += 4.0
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        # probabilities squashed so that they disagree with the logits' scale (not their argmax)
        paths[name] = _write(
            tmp_path, name, p if k else np.sqrt(p) / np.sqrt(p).sum(1, keepdims=True), z, splits, labels
        )
    df = read_predictions(paths["cnn_a"])
    assert all(c in df.columns for c in LOGIT_COLUMNS)
    table = load_scores(paths, "logits")
    assert np.allclose(table.scores[0], df[LOGIT_COLUMNS].to_numpy(), atol=1e-5)
    out = tmp_path / "out"
    result = run_late_fusion(
        paths,
        out_json=out / "late.json",
        out_predictions=out / "p.csv",
        out_metrics=out / "m.json",
        out_submission=out / "sub",
        methods=["accuracy_weighted_scores", "equal_weight_scores", "ridge_regression"],
        step=0.1,
        scores="logits",
    )
    assert result["scores"] == "logits" and result["cv"]["folds"] == 5
    fused = pd.read_csv(out / "p.csv", keep_default_na=False)
    assert all(c in fused.columns for c in LOGIT_COLUMNS)
    assert json.loads((out / "late.json").read_text())["test"]["accuracy"] > 0.6
    # a model without logit columns: one line naming the file
    p = predictions_frame(["c000"], ["val"], ["Angry"], np.full((1, C), 1 / C))
    write_predictions(tmp_path / "old.csv", p)
    with pytest.raises(AvferError, match=r"old\.csv.*z_"):
        load_scores({"x": str(tmp_path / "old.csv")}, "logits")


@pytest.mark.parametrize("scores", ["probabilities", "logits"])
@pytest.mark.parametrize(
    "method",
    ["weight_search", "accuracy_weighted_scores", "class_weight_search", "least_squares", "ridge_regression"],
)
def test_a_bundle_fuses_as_the_pipeline_did(tmp_path, method, scores):
    """The fusion a bundle carries (read_late_fusion of late_fusion.json) applied by predict's
    `fuse` to each test clip's model outputs gives the pipeline's fused probabilities (1e-4), on
    probabilities and on logits, for weight searches and regressions alike."""
    from avfer.bundle import Bundle, read_late_fusion
    from avfer.predict.clip import fuse

    rng = np.random.default_rng(4)
    n = 84
    y = np.arange(n) % C
    splits = ["val"] * 63 + ["test"] * 21
    labels = [EMOTIONS[i] for i in y]
    names = ("cnn_a", "gru_a", "audio_mlp")
    paths, outputs = {}, {}
    for k, name in enumerate(names):
        z = rng.normal(scale=1 + k, size=(n, C))
        hit = rng.random(n) < 0.5
        z[hit, y[hit]] += 3.0
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        paths[name] = _write(tmp_path, name, p, z, splits, labels)
        written = read_predictions(paths[name]).set_index("clip_id")  # as the pipeline rounds them
        outputs[name] = (written[[f"p_{e}" for e in EMOTIONS]], written[LOGIT_COLUMNS])
    out = tmp_path / "out"
    run_late_fusion(
        paths, out_json=out / "late.json", out_predictions=out / "p.csv", out_metrics=out / "m.json",
        out_submission=out / "sub", methods=[method], method=method, step=0.1, scores=scores,
    )  # fmt: skip
    bundle = Bundle({"fusion": read_late_fusion(out / "late.json")}, face_model=None)
    assert bundle.fusion["scores"] == scores
    fused = read_predictions(out / "p.csv").set_index("clip_id")
    for clip in fused.index[fused["split"] == "test"]:
        probs = {m: outputs[m][0].loc[clip].to_numpy(float) for m in names}
        logits = {m: outputs[m][1].loc[clip].to_numpy(float) for m in names}
        got = fuse(bundle, probs, logits)
        want = fused.loc[clip, [f"p_{e}" for e in EMOTIONS]].to_numpy(float)
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=clip)
