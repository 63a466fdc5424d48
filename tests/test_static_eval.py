"""Static evaluation of FER2013 image models: a seed CNN pre-trained by pretrain_cnn on a
FER2013-style csv is scored on PublicTest / PrivateTest with the per-class report, the top-2
analysis and the ensemble of two runs."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from avfer.config import validate_config
from avfer.demo.writer import fer_rows
from avfer.train.cnn import pretrain
from avfer.train.static_eval import evaluate_static, top2_analysis


def test_top2_analysis_by_hand():
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    y = np.array([0, 1, 0, 1])  # right, wrong (2nd right), wrong (2nd wrong), right
    t = top2_analysis(probs, y)
    assert t["errors"] == 2 and t["second_choice_right"] == 1 and t["share_of_errors"] == 0.5
    assert t["top2_accuracy"] == 0.75


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("fer") / "fer 2013.csv"
    pd.DataFrame(fer_rows(seed=0, per_class=80), columns=["emotion", "pixels", "Usage"]).to_csv(
        path, index=False
    )
    return path


@pytest.mark.integration
def test_seed_cnns_pretrained_and_evaluated(fer_csv, tmp_path):
    torch.set_num_threads(1)
    cfg = validate_config(
        {
            "cnn": {"device": "cpu", "augment": "none", "pretrained": "none"},
            "pretrain": {
                "datasets": [{"format": "fer2013", "path": str(fer_csv)}],
                "train": {"epochs": 8, "lr": 0.001, "optimizer": "adam"},
            },
        }
    )
    models = {}
    for seed in (0, 1):
        out = tmp_path / f"seed_cnn{seed}"
        m = pretrain("seed_cnn", cfg["pretrain"], cfg["cnn"], model_path=out / "model.pt",
                     metrics_path=out / "metrics.json", seed=seed)  # fmt: skip
        assert m["val"]["accuracy"] > 0.3  # chance 1/7; measured 0.61 (seed 0)
        models[f"seed_cnn@seed{seed}"] = out / "model.pt"
    result = evaluate_static(
        models, fer_csv, out_json=tmp_path / "eval.json", out_report=tmp_path / "report.txt", device="cpu"
    )
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for name in models:
        for split in ("PublicTest", "PrivateTest"):
            s = saved["models"][name][split]
            assert s["accuracy"] > 0.3 and s["report"]["Happy"]["support"] > 0
            assert 0 <= s["top2"]["top2_accuracy"] <= 1 and s["top2"]["top2_accuracy"] >= s["accuracy"]
    ens = saved["ensemble"]["PrivateTest"]
    assert ens["accuracy"] > 0.3 and ens["n"] == saved["models"]["seed_cnn@seed0"]["PrivateTest"]["n"]
    text = (tmp_path / "report.txt").read_text()
    assert "FER2013 PrivateTest" in text and "ensemble" in text and "second choice right" in text


def test_publictest_is_marked_as_the_selection_split(fer_csv, tmp_path):
    """Pre-training chose each epoch on PublicTest: evaluation.json and the text report say so
    beside PrivateTest (held out), for every model and the ensemble."""
    from avfer.models.face import FaceModel, save_face_model

    torch.manual_seed(0)
    models = {}
    for name in ("a", "b"):
        models[name] = tmp_path / f"{name}.pt"
        save_face_model(models[name], FaceModel("seed_cnn", input_size=48, in_chans=1))
    result = evaluate_static(
        models, fer_csv, out_json=tmp_path / "e.json", out_report=tmp_path / "r.txt", device="cpu"
    )
    assert (
        result["roles"]["PublicTest"].startswith("selection") and result["roles"]["PrivateTest"] == "held out"
    )
    for scores in (*result["models"].values(), result["ensemble"]):
        assert (
            scores["PublicTest"]["role"].startswith("selection")
            and scores["PrivateTest"]["role"] == "held out"
        )
    text = (tmp_path / "r.txt").read_text()
    assert "FER2013 PublicTest (selection" in text and "FER2013 PrivateTest (held out)" in text
