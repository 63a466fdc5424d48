"""Clip-level video networks: every model's forward/backward and parameter count, the clip
sampler, clip-consistent augmentation, local weights, training on face caches, exact resume and
late fusion of the predictions."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from face_caches import face_group, write_face_caches

from avfer.config import load_config, validate_config
from avfer.data.clips import ClipBatches, clip_positions, clip_views
from avfer.data.frames import FrameStore
from avfer.datasets.splits import selection_split
from avfer.errors import AvferError
from avfer.fusion import summarize_models
from avfer.fusion.late import load_scores
from avfer.io import open_cache
from avfer.metrics import LOGIT_COLUMNS, PROB_COLUMNS, read_predictions
from avfer.models.specs import parse_model_name
from avfer.models.video.c3d import C3D, C3DDual
from avfer.models.video.classifier import VideoClassifier, load_video_model
from avfer.models.video.factory import build_video_model
from avfer.models.video.settings import VIDEO_MODEL_NAMES, video_settings
from avfer.models.video.tsm import temporal_shift
from avfer.train.video import train_video_model

TINY_VIT = {"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
TINY_VIT["intermediate_size"] = 64
# name -> (frames, size, builder args) of a tiny clip; C3D's five pools need 16 frames
TINY = {
    "c3d": (16, 16, {}),
    "c3d_dual": (16, 16, {}),
    "vgg16_lstm": (4, 32, {"frame_pool": "avg"}),  # the default 7x7 flatten: see the counts test
    "timesformer": (4, 32, TINY_VIT),
    "vivit": (4, 32, TINY_VIT),
    "vivit_joint": (4, 32, {**TINY_VIT, "tubelet_size": [2, 8, 8]}),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(m: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def on_meta(build, *args, **kwargs) -> torch.nn.Module:
    """Build a network on the meta device: shapes and parameter counts without allocating or
    initialising its weights (C3D alone is 78 M parameters)."""
    with torch.device("meta"):
        return build(*args, **kwargs)


@pytest.mark.parametrize("name", VIDEO_MODEL_NAMES)
def test_forward_backward_on_a_tiny_clip(name):
    frames, size, args = TINY.get(name, (8, 32, {}))
    torch.manual_seed(0)
    net = build_video_model(name, 7, frames=frames, input_size=size, **args)
    x = torch.randn(2, 3, frames, size, size)
    y = net(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    y.square().sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert parse_model_name(name).family == "video" and parse_model_name(name).modality == "visual"


def test_c3d_parameter_counts():
    c3d = on_meta(C3D, 7)  # 16 x 112 x 112: pool5 is 512 x 1 x 4 x 4
    convs = sum(n_params(m) for m in c3d.features.children())
    head = linear(8192, 4096) + linear(4096, 4096) + linear(4096, 7)
    assert n_params(c3d) == convs + head and abs(n_params(c3d) - 78.0e6) < 0.1e6
    conv_expected = sum(
        27 * cin * cout + cout
        for cin, cout in [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512)] + [(512, 512)] * 3
    )
    assert convs == conv_expected
    dual = on_meta(C3DDual, 7)
    assert n_params(dual) == 2 * convs + head  # two branches, one fc6-fc8 head
    ids1 = {id(p) for p in dual.branch1.parameters()}  # no parameter shared between the branches
    assert not ids1 & {id(p) for p in dual.branch2.parameters()}
    assert n_params(dual) < 0.7 * 2 * n_params(c3d)  # vs score fusion of two C3Ds


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t"])
def test_torchvision_counts_match_the_published_kinetics_models(name):
    weights = torchvision.models.get_model_weights(name).DEFAULT  # metadata only, no download
    net = on_meta(build_video_model, name, 7)
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv3d)][-1]
    dim = head.in_features if isinstance(head, torch.nn.Linear) else head.in_channels
    assert n_params(net) == weights.meta["num_params"] - linear(dim, 400) + linear(dim, 7)


def test_tsm_and_vgg16_lstm_counts():
    resnet50 = 25_557_032  # torchvision ResNet-50, 1000 classes
    tsm = on_meta(build_video_model, "tsm_resnet50", 7)
    assert n_params(tsm) == resnet50 - linear(2048, 1000) + linear(2048, 7)
    net = on_meta(build_video_model, "vgg16_lstm", 7)
    lstm = 4 * 128 * (25088 + 128) + 2 * 4 * 128
    assert n_params(net, trainable=True) == lstm + linear(128, 128) + linear(128, 7)
    assert n_params(net) - n_params(net, trainable=True) == 14_714_688  # VGG16 features, frozen


def test_vivit_factorised_has_one_temporal_block_per_layer():
    one = build_video_model("vivit", 7, frames=4, input_size=32, num_temporal_layers=1, **TINY_VIT)
    two = build_video_model("vivit", 7, frames=4, input_size=32, num_temporal_layers=2, **TINY_VIT)
    d, i = 32, 64  # a ViT block: qkv + output projection, MLP, two layer norms
    assert n_params(two) - n_params(one) == 4 * d * d + 4 * d + 2 * d * i + i + d + 4 * d


def test_temporal_shift_moves_one_eighth_each_way():
    x = torch.arange(2 * 4 * 16, dtype=torch.float32).view(2 * 4, 16, 1, 1)  # B=2, T=4, C=16
    y = temporal_shift(x, frames=4).view(2, 4, 16)
    v = x.view(2, 4, 16)
    assert torch.equal(y[:, :-1, :2], v[:, 1:, :2]) and (y[:, -1, :2] == 0).all()
    assert torch.equal(y[:, 1:, 2:4], v[:, :-1, 2:4]) and (y[:, 0, 2:4] == 0).all()
    assert torch.equal(y[:, :, 4:], v[:, :, 4:])
    net = build_video_model("tsm_resnet18", 7, frames=4, input_size=32).eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    # frame-averaged 2D features would not see the order of the frames; the shift does
    assert not torch.allclose(net(clip), net(clip.flip(2)), atol=1e-5)


def test_local_weights_load_with_the_head_dropped(tmp_path, caplog):
    src = build_video_model("mc3_18", 400)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "k400.pt")
    with caplog.at_level(logging.INFO, logger="avfer.models.backbones"):
        net = build_video_model("mc3_18", 7, pretrained_path=tmp_path / "k400.pt")
    assert torch.equal(net.stem[0].weight, src.stem[0].weight)
    assert net.fc.weight.shape == (7, 512)
    assert "fc.weight" in caplog.text and "dropped" in caplog.text
    with pytest.raises(AvferError, match="does not exist"):
        build_video_model("mc3_18", 7, pretrained_path=tmp_path / "missing.pt")
    with pytest.raises(AvferError, match="unknown video model"):
        build_video_model("c4d", 7)


def test_clip_positions():
    assert clip_positions(32, 8, "uniform").tolist() == [2, 6, 10, 14, 18, 22, 26, 30]
    assert clip_positions(32, 8, "segment", view=0, views=2).tolist() == [1, 5, 9, 13, 17, 21, 25, 29]
    assert clip_positions(5, 8, "uniform").tolist() == [0, 0, 1, 2, 2, 3, 4, 4]  # short: repeats
    assert clip_positions(1, 4, "segment", train=True).tolist() == [0, 0, 0, 0]
    dense = [clip_positions(40, 4, "dense", view=v, views=3, stride=2).tolist() for v in range(3)]
    assert dense == [[0, 2, 4, 6], [16, 18, 20, 22], [33, 35, 37, 39]]
    assert clip_positions(5, 4, "dense", stride=2).tolist() == clip_positions(5, 4, "uniform").tolist()
    torch.manual_seed(0)
    for _ in range(50):
        seg = clip_positions(37, 8, "segment", train=True)
        assert ((seg >= np.floor(np.arange(8) * 37 / 8)) & (seg < np.ceil(np.arange(1, 9) * 37 / 8))).all()
        d = clip_positions(37, 8, "dense", train=True, stride=3)
        assert (np.diff(d) == 3).all() and d[0] >= 0 and d[-1] < 37
    with pytest.raises(ValueError, match="sampling"):
        clip_positions(10, 4, "random")


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list:
    """train/val/test face caches (3 clips per emotion each) rendered with the demo's faces."""
    return write_face_caches(tmp_path_factory.mktemp("video"), clips_per_class=3, seed=0)


def test_clips_use_face_frames_only(faces):
    store = FrameStore.from_caches(faces, size=32, chans=1, max_frames=10)
    assert store.clips["n_faces"].max() == 10 and store.images.shape[1:] == (32, 32, 1)
    rows = np.flatnonzero(store.clips["n_faces"] > 0)
    assert len(rows) == len(store.clips) - 3  # the failed train clip, the faceless val/test clips
    data = ClipBatches(store, clip_views(rows, 2), frames=16, views=2)
    has_face = {}
    for path in faces:
        with open_cache(path, "faces") as f:
            has_face.update({c: g["has_face"][()] for c, g in f["clips"].items() if "has_face" in g})
    for item in range(0, len(data), 7):
        idx = data.frame_indices(item)
        clip_id = store.clips["clip_id"][data.items[item, 0]]
        assert (store.clip[idx] == data.items[item, 0]).all() and np.all(np.diff(store.t[idx]) >= 0)
        assert has_face[clip_id][store.t[idx]].all()
    x, y = data[[0, 1, 2]]
    assert x.shape == (3, 16, 32, 32, 1) and x.dtype == torch.uint8 and y.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="without a face"):
        ClipBatches(store, clip_views([int(np.flatnonzero(store.clips["n_faces"] == 0)[0])], 1), frames=4)


def test_augmentation_is_the_same_on_every_frame_of_a_clip():
    torch.manual_seed(0)
    model = VideoClassifier("c3d_2layer", frames=6, input_size=32, in_chans=3, augment="standard")
    frame = torch.randint(0, 256, (2, 1, 40, 40, 3), dtype=torch.uint8)
    clip = frame.expand(-1, 6, -1, -1, -1)  # six identical frames per clip
    out = model.train().transform(clip)  # [B, C, T, S, S]
    assert out.shape == (2, 3, 6, 32, 32)
    assert torch.allclose(out, out[:, :, :1].expand_as(out))  # augmented alike over time
    ref = model.eval().transform(clip)
    assert not torch.allclose(out, ref, atol=1e-3) and not torch.allclose(out[0], out[1])


def _settings(**over):
    section = {
        "models": ["c3d_2layer"],
        "frames": 8,
        "input_size": 48,
        "in_chans": 1,
        "augment": "none",
        "train": {"epochs": 30, "lr": 0.001, "batch_size": 4, "patience": 0, "score": "accuracy"},
    }
    section.update(over)
    return video_settings("c3d_2layer", validate_config({"video_models": section})["video_models"])


def _train(faces, folder, settings, **kw):
    return train_video_model(
        "c3d_2layer",
        faces,
        settings,
        model_path=folder / "model.pt",
        predictions_path=folder / "predictions.csv",
        metrics_path=folder / "metrics.json",
        confusion_path=folder / "confusion.svg",
        device="cpu",
        **kw,
    )


@pytest.mark.integration
def test_c3d_2layer_learns_the_face_groups_and_feeds_late_fusion(tmp_path):
    faces = write_face_caches(tmp_path, clips_per_class=6, seed=0)  # 41 train clips with a face
    metrics = _train(faces, tmp_path / "c3d_2layer", _settings(input_size=32))
    assert set(metrics) == {"train", "val"} and metrics["val"]["n"] == 42
    df = read_predictions(tmp_path / "c3d_2layer/predictions.csv")
    assert len(df) == 126 and list(df["split"].unique()) == ["train", "val", "test"]
    np.testing.assert_allclose(df[PROB_COLUMNS].sum(axis=1), 1, atol=1e-5)
    # From scratch, without pre-training: val accuracy 0.33 (chance 1/7). The face carries 4
    # groups (Neutral/Sad, Angry/Disgust, Fear/Surprise, Happy), chance 2/7 at most: measured 0.52.
    assert metrics["val"]["accuracy"] >= 0.25, metrics["val"]
    val = df[df["split"] == "val"]
    group_acc = (val["label"].map(face_group) == val["pred"].map(face_group)).mean()
    assert group_acc >= 0.45, group_acc
    model, extra = load_video_model(tmp_path / "c3d_2layer/model.pt")
    faceless = df[df["clip_id"].isin(["val_Angry_00", "test_Angry_00", "train_Angry_00"])]
    np.testing.assert_allclose(faceless[PROB_COLUMNS].to_numpy(), [extra["prior"]] * 3, atol=1e-6)
    assert extra["selected_on"] == "val" and model.spec["frames"] == 8
    assert (tmp_path / "c3d_2layer/confusion.svg").read_text().lstrip().startswith("<?xml")
    assert not list((tmp_path / "c3d_2layer").glob("resume-*.pt"))
    # late fusion and the summary read the predictions like any other model's
    other = df.copy()
    other[PROB_COLUMNS] = np.full((len(df), 7), 1 / 7)
    other.to_csv(tmp_path / "flat.csv", index=False)
    ours = str(tmp_path / "c3d_2layer/predictions.csv")
    table = load_scores({"c3d_2layer": ours, "audio_mlp": str(tmp_path / "flat.csv")})
    assert table.scores.shape == (2, 126, 7) and table.labelled("val")[1].shape == (42,)
    # clip logits like every model (fusion.scores: logits): the mean over views, log prior faceless
    z = df[LOGIT_COLUMNS].to_numpy(float)
    seen = ~df["clip_id"].isin(faceless["clip_id"]).to_numpy()
    assert (z[seen].argmax(1) == df.loc[seen, PROB_COLUMNS].to_numpy().argmax(1)).mean() > 0.9
    np.testing.assert_allclose(z[~seen], np.log([extra["prior"]] * 3), atol=1e-5)
    assert load_scores({"c3d_2layer": ours}, "logits").scores.shape == (1, 126, 7)
    fusion = tmp_path / "late_fusion.json"
    fitted = {"accuracy": 0, "uar": 0, "macro_f1": 0}
    fusion.write_text(
        json.dumps({"method": "x", "weights": {"c3d_2layer": 1.0}, "val_fitted": fitted, "cv": fitted})
    )
    metrics_path = str(tmp_path / "c3d_2layer/metrics.json")
    summary = summarize_models(
        {"c3d_2layer": metrics_path}, fusion, tmp_path / "s.csv", predictions={"c3d_2layer": ours}
    )
    row = summary.iloc[0]
    assert (row["family"], row["modality"]) == ("video", "visual")
    assert row["val_accuracy"] == pytest.approx(metrics["val"]["accuracy"])


def test_resume_matches_uninterrupted(faces, tmp_path):
    s = _settings(frames=4, input_size=32, train={"epochs": 2, "batch_size": 8, "patience": 0})
    full = _train(faces, tmp_path / "full", s, seed=3)
    assert _train(faces, tmp_path / "cut", s, seed=3, stop_after=1) == {}
    assert len(list((tmp_path / "cut").glob("resume-*.pt"))) == 1
    assert not (tmp_path / "cut/model.pt").exists()
    resumed = _train(faces, tmp_path / "cut", s, seed=3)
    assert resumed == full
    a = pd.read_csv(tmp_path / "full/predictions.csv")
    b = pd.read_csv(tmp_path / "cut/predictions.csv")
    pd.testing.assert_frame_equal(a, b)
    assert not list((tmp_path / "cut").glob("resume-*.pt"))


def test_settings_selection_split_and_configs():
    section = validate_config(
        {"video_models": {"frames": 12, "per_model": {"c3d": {"input_size": 96, "train": {"lr": 0.1}}}}}
    )["video_models"]
    keys = ("frames", "input_size", "normalization")
    c3d, tsm = video_settings("c3d", section), video_settings("tsm_resnet50", section)
    assert [c3d[k] for k in keys] == [12, 96, "symmetric"] and c3d["train"]["lr"] == 0.1
    assert [tsm[k] for k in keys] == [12, 224, "imagenet"] and tsm["train"]["lr"] == 0.001
    with pytest.raises(AvferError, match="per_model.c4d|'c4d' is not one of"):
        validate_config({"video_models": {"per_model": {"c4d": {}}}})
    with pytest.raises(AvferError, match="'sped' is not one of"):
        validate_config({"video_models": {"per_model": {"c3d": {"train": {"sped": 1}}}}})
    clips = pd.DataFrame({"split": ["train", "val", "dev"], "label": ["Happy", "Sad", ""]})
    assert selection_split(clips.loc[clips["label"] != "", "split"].tolist()) == "val"
    clips.loc[2, "label"] = "Angry"
    assert selection_split(clips.loc[clips["label"] != "", "split"].tolist()) == "dev"
    demo = load_config("config/config.yaml")["video_models"]
    afew = load_config("config/afew.yaml")["video_models"]
    assert demo["models"] and {"c3d", "r2plus1d_18", "tsm_resnet50"} <= set(afew["models"])
    for section in (demo, afew):
        for name in section["models"]:
            s = video_settings(name, section)
            assert s["frames"] >= 1 and s["input_size"] >= 16
