"""Training sequence models on synthetic caches: they learn what their modality can tell,
early fusion from trained encoders learns all 7 classes, an interrupted run resumes exactly."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from synth_caches import write_synthetic_caches

import avfer.train.common as common
from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.train.sequence import load_trained, model_settings, train_sequence_model

TRAIN = {
    "epochs": 8,
    "batch_size": 8,
    "lr": 0.005,
    "weight_decay": 0.0001,
    "patience": 0,
    "score": "uar",
    "balanced_loss": True,
    "grad_clip": 1.0,
    "device": "cpu",
    "amp": False,
}
TEMPORAL = {
    "hidden_size": 16,
    "num_layers": 1,
    "dropout": 0.1,
    "pooling": "mean",
    "attention_dim": 16,
    "window": 48,
    "stride": 24,
}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return write_synthetic_caches(tmp_path_factory.mktemp("train_seq"), clips_per_class=4)


def _train(name, out, caches, args, pretrained=None, train=TRAIN, resume=True):
    out.mkdir(parents=True, exist_ok=True)
    return train_sequence_model(
        name,
        model_args=args,
        train=train,
        feature_paths=caches["features"] if not name.startswith("audio") else [],
        audio_paths=caches["audio"] if not name.startswith(("gru", "bgru", "lstm")) else [],
        pretrained=pretrained,
        seed=0,
        threads=1,
        out_model=out / "model.pt",
        out_predictions=out / "predictions.csv",
        out_metrics=out / "metrics.json",
        resume_dir=out if resume else None,
    )


def test_models_learn_their_modality_and_early_fusion_all_classes(caches, tmp_path):
    video = _train("gru_synth", tmp_path / "gru_synth", caches, TEMPORAL)
    gru_args = {k: v for k, v in TEMPORAL.items() if k != "attention_dim"}
    audio = _train("audio_gru", tmp_path / "audio_gru", caches, gru_args)
    mlp = _train("audio_mlp", tmp_path / "audio_mlp", caches, {"hidden_sizes": [32], "dropout": 0.2})
    # Each modality separates 4 of the 7 classes: ~4/7 at best, well above chance (1/7).
    for m in (video, audio, mlp):
        assert 0.3 < m["val"]["accuracy"] <= 0.75
    fusion_args = {**gru_args, "freeze": True, "fc_sizes": [16]}
    pretrained = {
        "audio": str(tmp_path / "audio_gru/model.pt"),
        "video": str(tmp_path / "gru_synth/model.pt"),
    }
    train = {**TRAIN, "epochs": 20}
    early = _train(
        "earlyd_synth", tmp_path / "earlyd", caches, fusion_args, pretrained=pretrained, train=train
    )
    assert early["val"]["accuracy"] >= max(video["val"]["accuracy"], audio["val"]["accuracy"]) + 0.2
    df = pd.read_csv(tmp_path / "earlyd/predictions.csv", keep_default_na=False)
    assert len(df) == 84 and set(df.split) == {"train", "val", "test"}
    z = df[[f"z_{e}" for e in EMOTIONS]].to_numpy()  # clip logits beside the probabilities
    p = np.exp(z - z.max(1, keepdims=True))
    assert np.allclose(p / p.sum(1, keepdims=True), df[[f"p_{e}" for e in EMOTIONS]].to_numpy(), atol=1e-4)
    assert json.loads((tmp_path / "earlyd/metrics.json").read_text())["val"]["n"] == 28
    assert not list((tmp_path / "earlyd").glob("resume-*.pt"))  # removed once finished
    model, ckpt = load_trained(tmp_path / "earlyd/model.pt")
    assert ckpt["spec"]["name"] == "earlyd_synth" and set(ckpt["norms"]) == {"video", "audio"}
    assert ckpt["spec"]["args"]["audio_encoder"]["hidden_size"] == 16
    # the fallback predict gives a clip without input: the prior the pipeline gave its unseen clips
    train = df[df["split"] == "train"]
    want = np.bincount(train["label"].map(EMOTIONS.index), minlength=len(EMOTIONS)) + 1e-3
    np.testing.assert_allclose(ckpt["prior"], want / want.sum(), atol=1e-9)


def test_interrupted_training_resumes_to_the_same_result(caches, tmp_path, monkeypatch):
    _train("bgru_att_synth", tmp_path / "full", caches, TEMPORAL, resume=False)
    real_fit = common.fit

    def killed_after_two_epochs(*args, **kw):
        real_fit(*args, **{**kw, "stop_after": 2})
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "fit", killed_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        _train("bgru_att_synth", tmp_path / "resumed", caches, TEMPORAL)
    assert len(list((tmp_path / "resumed").glob("resume-*.pt"))) == 1
    assert not (tmp_path / "resumed/predictions.csv").exists()
    monkeypatch.setattr(common, "fit", real_fit)
    _train("bgru_att_synth", tmp_path / "resumed", caches, TEMPORAL)
    full = torch.load(tmp_path / "full/model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed/model.pt", weights_only=True)
    assert [h["loss"] for h in full["history"]] == [h["loss"] for h in resumed["history"]]
    for k, v in full["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k])
    assert (tmp_path / "full/predictions.csv").read_text() == (
        tmp_path / "resumed/predictions.csv"
    ).read_text()


def test_changed_settings_do_not_resume_a_stale_checkpoint(caches, tmp_path, monkeypatch):
    real_fit = common.fit

    def killed(*args, **kw):
        real_fit(*args, **{**kw, "stop_after": 1})
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "fit", killed)
    with pytest.raises(KeyboardInterrupt):
        _train("audio_mlp", tmp_path / "m", caches, {"hidden_sizes": [8], "dropout": 0.2})
    stale = list((tmp_path / "m").glob("resume-*.pt"))
    monkeypatch.setattr(common, "fit", real_fit)
    _train("audio_mlp", tmp_path / "m", caches, {"hidden_sizes": [9], "dropout": 0.2})
    assert not stale[0].exists()
    history = torch.load(tmp_path / "m/model.pt", weights_only=True)["history"]
    assert history[0]["epoch"] == 0 and len(history) == TRAIN["epochs"]


def test_model_settings_from_config_sections():
    from avfer.config import validate_config

    cfg = validate_config({})
    args, train = model_settings("bgru_att_resnet18", cfg["temporal"])
    assert args["window"] == cfg["temporal"]["window"] and train == cfg["temporal"]["train"]
    args, _ = model_settings("audio_mlp", cfg["audio_models"])
    assert args == cfg["audio_models"]["mlp"]
    args, _ = model_settings("earlyc_x", cfg["early_fusion"])
    assert args["fc_sizes"] == cfg["early_fusion"]["fc_sizes"] and "freeze" in args


def _assignment(caches, test_labels, dev_every=4):
    """train/dev/val/test of the synthetic caches: every 4th train clip is dev; the test clips
    get ``test_labels`` (their truth, or a permutation of it)."""
    out = {}
    from avfer.io.hdf5 import iter_clips

    for path in caches["audio"]:
        split = path.split("/")[-1].split("-")[0]
        for i, rec in enumerate(iter_clips([path], "audio", datasets=[])):
            if split == "test":
                out[rec.clip_id] = ("test", test_labels[rec.clip_id])
            elif split == "train" and i % dev_every == 0:
                out[rec.clip_id] = ("dev", rec.label)
            else:
                out[rec.clip_id] = (split, rec.label)
    return out


def test_dev_selects_and_test_labels_are_never_used(caches, tmp_path):
    """With a dev split the model selects its epoch on dev; permuting the test labels changes its
    test metrics only: the same weights, the same predicted probabilities for every clip."""
    import numpy as np

    root = caches["audio"][0].rsplit("/audio/", 1)[0]
    truth = pd.read_csv(f"{root}/truth.csv", dtype=str).set_index("clip_id")["label"].to_dict()
    test_ids = sorted(c for c in truth if c.startswith("test_"))
    shuffled = dict(
        zip(test_ids, np.random.default_rng(0).permutation([truth[c] for c in test_ids]), strict=True)
    )
    args, train = model_settings("audio_mlp", {"mlp": {"hidden_sizes": [16], "dropout": 0.1}, "train": TRAIN})
    results = {}
    for name, labels in (("true", truth), ("permuted", shuffled)):
        out = tmp_path / name
        out.mkdir()
        metrics = train_sequence_model(
            "audio_mlp", model_args=args, train=train, audio_paths=caches["audio"],
            assignment=_assignment(caches, labels), seed=0, threads=1, out_model=out / "model.pt",
            out_predictions=out / "predictions.csv", out_metrics=out / "metrics.json",
        )  # fmt: skip
        results[name] = (metrics, pd.read_csv(out / "predictions.csv", keep_default_na=False))
    (m_true, p_true), (m_perm, p_perm) = results["true"], results["permuted"]
    assert {"train", "dev", "val", "test"} <= set(m_true)
    assert m_true["test"]["accuracy"] != m_perm["test"]["accuracy"]
    for split in ("train", "dev", "val"):
        assert m_true[split] == m_perm[split]
    probs = [c for c in p_true.columns if c.startswith("p_")]
    assert np.array_equal(p_true[probs].to_numpy(), p_perm[probs].to_numpy())
    no_audio = p_true[p_true["status"] != "ok"]  # the clips without audio: the fallback, said
    assert len(no_audio) >= 1 and set(no_audio["status"]) == {"no_audio"}
    prior = p_true.loc[no_audio.index, probs].to_numpy()
    assert np.allclose(prior, prior[0]) and np.isclose(prior[0].sum(), 1.0)  # one fallback row
    ckpt = torch.load(tmp_path / "true" / "model.pt", weights_only=False)
    assert len(ckpt["history"]) == TRAIN["epochs"]  # selected on dev, by its score per epoch


def test_a_training_split_without_the_models_input_is_one_line(caches, tmp_path):
    """A protocol run whose training clips have no audio (a k-fold run where the few clips with a
    voice all fell in the test fold) stops the audio model with one line naming it, its folder
    and why, not a standardisation error."""
    from avfer.io.hdf5 import iter_clips

    assignment = {}
    for path in caches["audio"]:
        for rec in iter_clips([path], "audio", datasets=[]):
            deaf = rec.status == "no_audio"
            assignment[rec.clip_id] = ("train" if deaf else "val", rec.label or "Angry")
    assert sum(s == "train" for s, _ in assignment.values()) >= 2
    out = tmp_path / "fold-2" / "models" / "audio_mlp"
    args, train = model_settings("audio_mlp", {"mlp": {"hidden_sizes": [16]}, "train": TRAIN})
    with pytest.raises(AvferError) as err:
        train_sequence_model(
            "audio_mlp", model_args=args, train=train, audio_paths=caches["audio"], assignment=assignment,
            out_model=out / "model.pt", out_predictions=out / "predictions.csv",
            out_metrics=out / "metrics.json",
        )  # fmt: skip
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"audio_mlp ({out}): none of the ")
    assert "training clips has audio, so it cannot be trained" in msg
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
