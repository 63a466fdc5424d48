"""The shared evaluation format: metrics against hand-computed values, predictions round trip."""

import json

import numpy as np
import pytest

from avfer.errors import AvferError
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


def test_metrics_hand_computed():
    # class 0: 2 of 3 right; class 3: 1 of 1 right -> accuracy 3/4, UAR (2/3 + 1) / 2
    m = compute_metrics([0, 0, 0, 3], [0, 0, 3, 3])
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["uar"] == pytest.approx((2 / 3 + 1) / 2)
    # F1: class 0: p=1, r=2/3 -> 0.8; class 3: p=1/2, r=1 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    conf = np.array(m["confusion"])
    assert conf.shape == (7, 7) and conf[0, 0] == 2 and conf[0, 3] == 1 and conf[3, 3] == 1
    assert conf.sum() == 4


def test_metrics_reject_empty():
    with pytest.raises(AvferError):
        compute_metrics([], [])


def test_predictions_roundtrip_and_evaluate(tmp_path):
    probs = np.eye(7)[[0, 3, 5, 1]] * 0.9 + 0.1 / 7
    df = predictions_frame(
        ["a", "b", "c", "d"], ["val", "val", "test", "test"], ["Angry", "Sad", "", ""], probs
    )
    assert list(df["pred"]) == [EMOTIONS[i] for i in (0, 3, 5, 1)]
    write_predictions(tmp_path / "p.csv", df)
    back = read_predictions(tmp_path / "p.csv")
    assert back["clip_id"].tolist() == ["a", "b", "c", "d"] and back["label"].tolist()[2] == ""
    m = evaluate_predictions(back)
    assert set(m) == {"val"} and m["val"]["accuracy"] == 0.5
    write_metrics(tmp_path / "metrics.json", m)
    assert json.loads((tmp_path / "metrics.json").read_text())["val"]["n"] == 2
    plot_confusion(m["val"]["confusion"], tmp_path / "conf.svg", "val")
    assert (tmp_path / "conf.svg").read_text().startswith("<?xml")


def test_read_predictions_names_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("clip_id,split\nx,val\n")
    with pytest.raises(AvferError, match="bad.csv"):
        read_predictions(bad)
