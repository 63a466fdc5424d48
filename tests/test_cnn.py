"""Visual CNN training: pre-training, fine-tuning on face caches, clip predictions, exact resume,
and the per-frame feature cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from face_caches import face_group, write_face_caches

from avfer.config import validate_config
from avfer.data.frames import FrameStore
from avfer.demo.writer import fer_rows
from avfer.io import open_cache, read_clip
from avfer.labels import EMOTIONS
from avfer.metrics import PROB_COLUMNS, read_predictions
from avfer.models.face import FaceModel, load_face_model, save_face_model
from avfer.train.cnn import finetune, pretrain
from avfer.train.cnn_predict import aggregate_frames, extract_features
from avfer.train.common import class_weights, resume_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> list:
    """train/val/test face caches, 3 clips per emotion each, rendered with the demo's faces."""
    return write_face_caches(tmp_path_factory.mktemp("cnn"), clips_per_class=3, seed=0)


@pytest.fixture(scope="session")
def fer_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("fer") / "fer2013.csv"
    rows = fer_rows(seed=0, per_class=40)  # the demo generator's FER2013-style images
    pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"]).to_csv(path, index=False)
    return path


def _cfg(cnn=None, pretrain_cfg=None):
    cnn = {"device": "cpu", "backbones": ["mini_xception"], "pretrained": "none", **(cnn or {})}
    cfg = validate_config({"cnn": cnn, "pretrain": pretrain_cfg or {}})
    return cfg["cnn"], cfg["pretrain"]


def _finetune(faces, folder, cnn, **kw):
    return finetune(
        "mini_xception",
        faces,
        cnn,
        model_path=folder / "model.pt",
        predictions_path=folder / "predictions.csv",
        metrics_path=folder / "metrics.json",
        **kw,
    )


def test_aggregate_frames_mean_and_median():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]]))
    groups = np.array([0, 0, 0, 2])
    mean = aggregate_frames(logits, groups, 3, "mean")
    np.testing.assert_allclose(mean[0], [1.3 / 3, 0.7 / 3, 1.0 / 3])
    assert mean[1].sum() == 0 and np.allclose(mean[2], [0.2, 0.2, 0.6])
    med = aggregate_frames(logits, groups, 3, "median")
    np.testing.assert_allclose(med[0], np.array([0.5, 0.2, 0.1]) / 0.8)


def test_class_weights_and_resume_path(tmp_path):
    w = class_weights(np.array([0, 0, 0, 1]))
    assert w[0] * 3 == pytest.approx(w[1]) and w[2:].sum() == 0
    assert class_weights(np.zeros(2, int), False) is None
    a = resume_path(tmp_path, {"lr": 1})
    a.write_text("x")
    b = resume_path(tmp_path, {"lr": 2})  # another config: the stale checkpoint goes
    assert a != b and not a.exists() and resume_path(tmp_path, {"lr": 2}) == b


@pytest.mark.integration
def test_pretrain_then_finetune_learns_the_face_groups(faces, fer_csv, tmp_path):
    cnn, pre = _cfg(
        {"frames_per_clip": 12, "train": {"epochs": 6}},
        {"enabled": True, "datasets": [{"format": "fer2013", "path": str(fer_csv)}], "train": {"epochs": 10}},
    )
    pm = pretrain(
        "mini_xception", pre, cnn, model_path=tmp_path / "pre/model.pt", metrics_path=tmp_path / "pre/m.json"
    )
    assert set(pm) == {"val", "test", "by_dataset"} and pm["val"]["n"] == 28
    assert pm["val"]["role"].startswith("selection") and pm["test"]["role"].startswith("held out")
    metrics = _finetune(
        faces, tmp_path / "cnn", cnn, init=tmp_path / "pre/model.pt", confusion_path=tmp_path / "cnn/c.svg"
    )
    assert set(metrics) == {"train", "val"}  # the test clips are unlabelled
    df = read_predictions(tmp_path / "cnn/predictions.csv")
    assert len(df) == 63 and list(df["split"].unique()) == ["train", "val", "test"]
    np.testing.assert_allclose(df[PROB_COLUMNS].sum(axis=1), 1, atol=1e-5)
    # The face carries 4 groups (Neutral/Sad, Angry/Disgust, Fear/Surprise, Happy): group
    # accuracy on val, chance 2/7 at most; measured 0.67-0.95 over seeds 0-3.
    val = df[df["split"] == "val"]
    group_acc = (val["label"].map(face_group) == val["pred"].map(face_group)).mean()
    assert group_acc >= 0.5, group_acc
    assert metrics["val"]["n"] == 21  # the faceless val clip is counted (with the prior row)
    model, extra = load_face_model(tmp_path / "cnn/model.pt")
    faceless = df[df["clip_id"].isin(["val_Angry_00", "test_Angry_00", "train_Angry_00"])]
    np.testing.assert_allclose(faceless[PROB_COLUMNS].to_numpy(), [extra["prior"]] * 3, atol=1e-6)
    z = faceless[[f"z_{e}" for e in EMOTIONS]].to_numpy()  # fallback logits: softmax = prior
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(1, keepdims=True), [extra["prior"]] * 3, atol=1e-5)
    assert (tmp_path / "cnn/c.svg").read_text().lstrip().startswith("<?xml")
    assert not list((tmp_path / "cnn").glob("resume-*.pt"))


def test_resume_matches_uninterrupted_and_features(faces, tmp_path):
    cnn, _ = _cfg({"input_size": 32, "frames_per_clip": 4, "val_frames_per_clip": 2, "train": {"epochs": 3}})
    full = _finetune(faces, tmp_path / "full", cnn, seed=3)
    assert _finetune(faces, tmp_path / "cut", cnn, seed=3, stop_after=1) == {}
    assert len(list((tmp_path / "cut").glob("resume-*.pt"))) == 1 and not (tmp_path / "cut/model.pt").exists()
    resumed = _finetune(faces, tmp_path / "cut", cnn, seed=3)
    assert resumed == full
    a = pd.read_csv(tmp_path / "full/predictions.csv")
    b = pd.read_csv(tmp_path / "cut/predictions.csv")
    pd.testing.assert_frame_equal(a, b)
    assert not list((tmp_path / "cut").glob("resume-*.pt"))

    # feature cache of the val shard, aligned with the face cache
    out = tmp_path / "features/val-000.h5"
    counts = extract_features(tmp_path / "full/model.pt", faces[1], out, device="cpu")
    model, _ = load_face_model(tmp_path / "full/model.pt")
    with open_cache(faces[1], "faces") as ff, open_cache(out, "features") as fe:
        assert fe.attrs["backbone"] == "mini_xception" and fe.attrs["feature_dim"] == 128
        assert list(fe["clips"]) == list(ff["clips"]) and counts["clips"] == 21
        for clip_id in ff["clips"]:
            face, feat = read_clip(ff, clip_id), read_clip(fe, clip_id)
            assert (feat.split, feat.label, feat.status) == (face.split, face.label, face.status)
            has_face = face.data["has_face"] & (face.status == "ok")
            assert feat.data["features"].shape == (len(has_face), 128)
            assert feat.data["features"].dtype == np.float32
            assert np.array_equal(feat.data["mask"], has_face)
            assert not feat.data["features"][~has_face].any()
        one = read_clip(ff, "val_Happy_01")
        t = np.flatnonzero(one.data["has_face"])[:3]
        with torch.no_grad():
            direct = model.forward_features(torch.from_numpy(one.data["faces"][t])).numpy()
        np.testing.assert_allclose(read_clip(fe, "val_Happy_01").data["features"][t], direct, atol=1e-4)


def test_feature_map_cache_width_is_the_models_feature_dim(faces, tmp_path):
    """cnn.feature_layer: map through extract_features: the cache is as wide as the model says,
    holds the flattened maps, and G changes the cache's config hash."""
    hashes = []
    for g, dim in ((None, 128 * 4 * 4), (2, 128 * 2 * 2)):  # mini_xception at 64 px: a 4 x 4 map
        model = FaceModel("mini_xception", input_size=64, in_chans=1, feature_layer="map", feature_map_size=g)
        assert model.feature_dim == dim
        save_face_model(tmp_path / f"{g}.pt", model)
        out = tmp_path / f"features-{g}.h5"
        extract_features(tmp_path / f"{g}.pt", faces[1], out, device="cpu")
        with open_cache(out, "features") as fe, open_cache(faces[1], "faces") as ff:
            assert fe.attrs["feature_dim"] == dim
            hashes.append(fe.attrs["config_hash"])
            face, feat = read_clip(ff, "val_Happy_01"), read_clip(fe, "val_Happy_01")
        t = np.flatnonzero(face.data["has_face"])[:2]
        assert feat.data["features"].shape == (len(face.data["has_face"]), dim)
        with torch.no_grad():
            x = model.eval().transform(torch.from_numpy(face.data["faces"][t]))
            fmap = model.backbone.forward_feature_map(x)
        assert fmap.shape[1:] == (128, 4, 4)
        cells = feat.data["features"][t].reshape(len(t), g or 4, g or 4, 128)
        expected = fmap if g is None else torch.nn.functional.avg_pool2d(fmap, 2)
        np.testing.assert_allclose(cells, expected.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    assert hashes[0] != hashes[1]


def test_failed_clip_gets_no_feature_datasets(faces, tmp_path):
    cnn, _ = _cfg({"input_size": 32, "frames_per_clip": 2, "train": {"epochs": 1}})
    _finetune(faces, tmp_path, cnn)
    extract_features(tmp_path / "model.pt", faces[0], tmp_path / "f.h5", device="cpu")
    with open_cache(tmp_path / "f.h5", "features") as f:
        failed = read_clip(f, "train_Angry_00")
    assert failed.status == "failed" and failed.error == "decode" and failed.data == {}
    store = FrameStore.from_caches([faces[0]], size=32, chans=1)
    assert store.clips.set_index("clip_id").loc["train_Angry_00", "n_faces"] == 0
    assert EMOTIONS[0] == "Angry"


def test_pretrain_resume_matches_uninterrupted(fer_csv, tmp_path):
    cnn, pre = _cfg(
        {"input_size": 32},
        {"datasets": [{"format": "fer2013", "path": str(fer_csv), "max_images": 70}], "train": {"epochs": 2}},
    )

    def run(folder, **kw):
        return pretrain(
            "mini_xception", pre, cnn, model_path=folder / "model.pt", metrics_path=folder / "m.json", **kw
        )

    full = run(tmp_path / "full")
    assert run(tmp_path / "cut", stop_after=1) == {} and not (tmp_path / "cut/model.pt").exists()
    assert run(tmp_path / "cut") == full
    a, _ = load_face_model(tmp_path / "full/model.pt")
    b, _ = load_face_model(tmp_path / "cut/model.pt")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_sequence_logits_are_the_mean_frame_logits_and_give_one_loss_per_sequence():
    torch.manual_seed(0)
    from avfer.models.face import FaceModel

    model = FaceModel("mini_xception", input_size=48, in_chans=1, augment="none").eval()
    x = torch.randint(0, 256, (3, 5, 48, 48, 1), dtype=torch.uint8)
    y = torch.tensor([0, 3, 6])
    frames = torch.stack([model(x[:, t]) for t in range(5)], dim=1)  # [B, T, 7]
    mean = frames.mean(1)
    torch.testing.assert_close(model(x), mean, rtol=1e-5, atol=1e-5)
    by_hand = (torch.logsumexp(mean, 1) - mean[torch.arange(3), y]).mean()
    torch.testing.assert_close(torch.nn.functional.cross_entropy(model(x), y), by_hand, rtol=1e-5, atol=1e-6)


def test_sequence_level_finetune_trains_on_sequences(faces, tmp_path, monkeypatch):
    from avfer.models.face import FaceModel

    shapes = []
    forward = FaceModel.forward
    monkeypatch.setattr(
        FaceModel, "forward", lambda self, x: (shapes.append(tuple(x.shape)), forward(self, x))[1]
    )
    cnn, _ = _cfg({"sequence_frames": 6, "train": {"epochs": 2, "batch_size": 4}})
    metrics = _finetune(faces, tmp_path / "cnn", cnn)
    train = [s for s in shapes if len(s) == 5]
    # 20 train clips with a face, 4 sequences a batch, 2 epochs; validation and prediction on frames
    assert len(train) == 2 * 5 and {s[:2] for s in train} == {(4, 6)}, train
    assert any(len(s) == 4 for s in shapes)
    df = read_predictions(tmp_path / "cnn/predictions.csv")
    assert len(df) == 63 and set(metrics) == {"train", "val"}
    np.testing.assert_allclose(df[PROB_COLUMNS].sum(axis=1), 1, atol=1e-5)
