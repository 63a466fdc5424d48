"""Zero-length and failed clips in train, val and test flow through every model family: each
model trains, and every such clip gets the training fallback (the train prior) with its status;
the late fusion and the summary read the results like any other."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from face_caches import write_face_caches
from synth_caches import write_synthetic_caches

from avfer.config import validate_config
from avfer.fusion import run_late_fusion, summarize_models
from avfer.fusion.late import fused_status
from avfer.io import open_cache
from avfer.labels import EMOTIONS
from avfer.metrics import PROB_COLUMNS, read_predictions
from avfer.models.temporal import TemporalClassifier, clip_windows, window_validity
from avfer.models.video.settings import video_settings
from avfer.train.cnn import finetune
from avfer.train.cnn_predict import extract_features
from avfer.train.common import train_prior
from avfer.train.end_to_end import train_end_to_end
from avfer.train.sequence import train_sequence_model
from avfer.train.video import train_video_model

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = {
    "epochs": 2,
    "batch_size": 8,
    "lr": 0.005,
    "weight_decay": 0.0,
    "patience": 0,
    "score": "uar",
    "balanced_loss": True,
    "grad_clip": 1.0,
    "device": "cpu",
    "amp": False,
}
GRU = {"hidden_size": 8, "num_layers": 1, "dropout": 0.1, "pooling": "mean", "window": 32, "stride": 16}
BROKEN = {f"{s}_{k}" for s in ("train", "val", "test") for k in ("failed", "empty")}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return write_synthetic_caches(tmp_path_factory.mktemp("broken"), clips_per_class=2, broken=True)


def _prior(df: pd.DataFrame, seen_only: bool = False) -> np.ndarray:
    """The train prior of the labelled train clips of a predictions frame (``seen_only``: of those
    the model could see, as the face-frame models count them)."""
    train = df[(df["split"] == "train") & (df["label"] != "")]
    if seen_only:
        train = train[train["status"] == "ok"]
    return train_prior([EMOTIONS.index(x) for x in train["label"]])


def test_zero_frame_windows_and_models():
    """window_validity, clip_windows and a windowed model accept sequences of zero frames."""
    n, valid = window_validity(torch.zeros((2, 0), dtype=torch.bool), 4, 2)
    assert n == 1 and valid.shape == (2, 1) and not valid.any()
    inputs = {"audio": torch.zeros((0, 3)), "audio_mask": torch.zeros(0, dtype=torch.bool)}
    windows, valid = clip_windows(inputs, ("audio", "audio_mask"), ("audio_mask",), 4, 2)
    assert windows["audio"].shape[0] == 1 and not valid.any()
    model = TemporalClassifier(3, modality="audio", hidden_size=4, window=4, stride=2).eval()
    for window in (None, 4):
        model.window = window
        logits = model(audio=torch.zeros((2, 0, 3)), audio_mask=torch.zeros((2, 0), dtype=torch.bool))
        assert logits.shape == (2, 7) and not logits.any()


@pytest.mark.parametrize(
    "name,args",
    [
        ("gru_synth", GRU),
        ("audio_gru", GRU),
        ("audio_mlp", {"hidden_sizes": [8], "dropout": 0.1}),
        ("earlya_synth", {**GRU, "freeze": True, "fc_sizes": [8]}),
    ],
)
def test_sequence_models_give_broken_clips_the_fallback(caches, tmp_path, name, args):
    metrics = train_sequence_model(
        name,
        model_args=args,
        train=TRAIN,
        feature_paths=caches["features"] if not name.startswith("audio") else [],
        audio_paths=caches["audio"] if not name.startswith("gru") else [],
        seed=0,
        out_model=tmp_path / "model.pt",
        out_predictions=tmp_path / "predictions.csv",
        out_metrics=tmp_path / "metrics.json",
    )
    assert {"train", "val"} <= set(metrics)
    df = read_predictions(tmp_path / "predictions.csv").set_index("clip_id")
    broken = df.loc[sorted(BROKEN)]
    np.testing.assert_allclose(broken[PROB_COLUMNS].to_numpy(), [_prior(df.reset_index())] * 6, atol=1e-6)
    failed = "failed"
    blind = "no_audio" if name.startswith("audio") else "no_face"
    assert broken["status"].to_dict() == {c: failed if c.endswith("failed") else blind for c in broken.index}
    assert (df.drop(index=sorted(BROKEN))["status"].isin(["ok", "no_audio"])).all()


def test_early_fusion_from_encoders_and_late_fusion(caches, tmp_path):
    """Option d (from the trained audio and visual GRUs), then the late fusion and the summary
    over the models: the broken clips keep their fallback and status to the end."""
    common = {"train": TRAIN, "seed": 0}
    paths = {}
    for name, args, kw in (
        ("gru_synth", GRU, {"feature_paths": caches["features"]}),
        ("audio_gru", GRU, {"audio_paths": caches["audio"]}),
    ):
        out = tmp_path / name
        out.mkdir()
        train_sequence_model(
            name, model_args=args, out_model=out / "model.pt", out_predictions=out / "predictions.csv",
            out_metrics=out / "metrics.json", **kw, **common,
        )  # fmt: skip
        paths[name] = out
    out = tmp_path / "earlyd_synth"
    out.mkdir()
    pre = {"audio": str(paths["audio_gru"] / "model.pt"), "video": str(paths["gru_synth"] / "model.pt")}
    train_sequence_model(
        "earlyd_synth", model_args={**GRU, "freeze": True, "fc_sizes": [8]}, pretrained=pre,
        feature_paths=caches["features"], audio_paths=caches["audio"], out_model=out / "model.pt",
        out_predictions=out / "predictions.csv", out_metrics=out / "metrics.json", **common,
    )  # fmt: skip
    paths["earlyd_synth"] = out
    preds = {m: str(p / "predictions.csv") for m, p in paths.items()}
    early = read_predictions(preds["earlyd_synth"]).set_index("clip_id")
    assert early.loc["test_failed", "status"] == "failed" and early.loc["val_empty", "status"] == "no_face"
    fused = tmp_path / "fused"
    result = run_late_fusion(
        preds,
        out_json=fused / "late_fusion.json",
        out_predictions=fused / "fusion/predictions.csv",
        out_metrics=fused / "fusion/metrics.json",
        out_submission=fused / "submission",
        step=0.25,
        methods=["accuracy_weighted_scores", "weight_search"],
        folds=3,
    )
    assert {"test_failed", "test_empty"} <= set(result["test_predictions"])
    df = read_predictions(fused / "fusion/predictions.csv").set_index("clip_id")
    assert df.loc["test_failed", "status"] == "failed"
    np.testing.assert_allclose(df.loc["test_failed", PROB_COLUMNS].sum(), 1.0, atol=1e-6)
    table = summarize_models(
        {m: str(p / "metrics.json") for m, p in paths.items()},
        fused / "late_fusion.json",
        fused / "summary.csv",
        predictions=preds,
        out_fallbacks=fused / "fallbacks.csv",
    )
    assert (table["n_fallback"].iloc[:3] >= 6).all()
    fallbacks = pd.read_csv(fused / "fallbacks.csv", keep_default_na=False)
    assert set(fallbacks["clip_id"]) >= BROKEN


def _assert_fallback(path, seen_only: bool = True) -> None:
    """The zero-length clips of ``path`` have the train prior and a status saying why."""
    df = read_predictions(path)
    broken = df.set_index("clip_id").loc[sorted(BROKEN)]
    prior = _prior(df, seen_only)
    np.testing.assert_allclose(broken[PROB_COLUMNS].to_numpy(), [prior] * len(BROKEN), atol=1e-6)
    want = {c: "failed" if c.endswith("failed") else "no_face" for c in broken.index}
    assert broken["status"].to_dict() == want


@pytest.fixture(scope="module")
def visual(tmp_path_factory):
    """Face caches with the zero-length clips in every split → a fine-tuned mini-Xception → its
    feature caches (written for every clip, the zero-length ones included)."""
    root = tmp_path_factory.mktemp("broken_faces")
    faces = write_face_caches(root, clips_per_class=1, frames=(8, 12), broken=True)
    cnn = validate_config(
        {"cnn": {"device": "cpu", "input_size": 32, "frames_per_clip": 4, "pretrained": "none"}}
    )["cnn"]
    cnn["train"] = {**cnn["train"], "epochs": 1, "batch_size": 8}
    out = root / "cnn"
    finetune(
        "mini_xception", faces, cnn, model_path=out / "model.pt", predictions_path=out / "predictions.csv",
        metrics_path=out / "metrics.json", seed=0,
    )  # fmt: skip
    features = []
    for path in faces:
        features.append(str(root / "features" / path.name))
        extract_features(out / "model.pt", path, features[-1], device="cpu")
    return {"root": root, "faces": [str(p) for p in faces], "features": features, "cnn": out}


def test_cnn_and_its_features_keep_the_broken_clips(visual):
    _assert_fallback(visual["cnn"] / "predictions.csv", seen_only=False)  # its prior counts every train clip
    with open_cache(visual["features"][1], "features") as f:
        assert f["clips/val_failed"].attrs["status"] == "failed" and "features" not in f["clips/val_failed"]
        assert f["clips/val_empty/features"].shape == (0, 128)


def test_temporal_and_end_to_end_on_the_features(visual, tmp_path):
    seq = tmp_path / "gru"
    seq.mkdir()
    train_sequence_model(
        "gru_mini_xception", model_args={**GRU, "window": 4, "stride": 2}, train=TRAIN,
        feature_paths=visual["features"], seed=0, out_model=seq / "model.pt",
        out_predictions=seq / "predictions.csv", out_metrics=seq / "metrics.json",
    )  # fmt: skip
    _assert_fallback(seq / "predictions.csv", seen_only=False)
    out = tmp_path / "e2e"
    metrics = train_end_to_end(
        "e2e_gru_mini_xception", cnn_path=visual["cnn"] / "model.pt", sequence_path=seq / "model.pt",
        face_paths=visual["faces"], train={**TRAIN, "epochs": 1, "batch_size": 4}, out_model=out / "model.pt",
        out_predictions=out / "predictions.csv", out_metrics=out / "metrics.json", seed=0,
    )  # fmt: skip
    assert {"train", "val"} <= set(metrics)
    _assert_fallback(out / "predictions.csv")


def test_video_network_gives_broken_clips_the_fallback(visual, tmp_path):
    section = {
        "models": ["c3d_2layer"], "frames": 4, "input_size": 32, "in_chans": 1, "augment": "none",
        "train": {"epochs": 1, "batch_size": 4, "patience": 0},
    }  # fmt: skip
    settings = video_settings("c3d_2layer", validate_config({"video_models": section})["video_models"])
    metrics = train_video_model(
        "c3d_2layer", visual["faces"], settings, model_path=tmp_path / "model.pt",
        predictions_path=tmp_path / "predictions.csv", metrics_path=tmp_path / "metrics.json", device="cpu",
    )  # fmt: skip
    assert {"train", "val"} <= set(metrics)
    _assert_fallback(tmp_path / "predictions.csv")


def test_fused_status_is_ok_when_any_model_saw_the_clip():
    statuses = np.array([["ok", "no_face", "failed", "no_face"], ["no_audio", "no_audio", "failed", "ok"]])
    assert fused_status(statuses).tolist() == ["ok", "no_face", "failed", "ok"]
    assert fused_status(np.array([["no_video"], ["failed"]])).tolist() == ["failed"]
