"""End-to-end CNN + sequence model (``e2e_<model>``): it starts exactly where the two stages end
(the fine-tuned CNN and a GRU / early fusion trained on its cached features), ``head_epochs``
trains the sequence model alone, then the CNN trains too; outputs in the shared format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from face_caches import write_face_caches

from avfer.config import validate_config
from avfer.errors import AvferError
from avfer.io import h5_writer, open_cache, read_clip, write_clip
from avfer.labels import EMOTIONS
from avfer.models.end_to_end import from_stages, load_end_to_end
from avfer.models.face import load_face_model
from avfer.train.cnn import finetune
from avfer.train.cnn_predict import extract_features
from avfer.train.end_to_end import EndToEndData, clip_logits, train_end_to_end
from avfer.train.sequence import train_sequence_model

SEQ = {"hidden_size": 16, "num_layers": 1, "dropout": 0.1, "pooling": "mean", "attention_dim": 8}
TRAIN = {
    "epochs": 2, "batch_size": 4, "lr": 0.003, "weight_decay": 0.0, "patience": 0, "score": "accuracy",
    "balanced_loss": True, "grad_clip": 1.0, "device": "cpu", "amp": False,
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def _audio_caches(faces: list, root) -> list[str]:
    """LLD caches of the face caches' clips: 6 LLDs per grid frame, a voice per emotion."""
    rng = np.random.default_rng(1)
    centers = rng.normal(0, 1.5, (len(EMOTIONS), 6))
    out = []
    for path in faces:
        apath = root / "audio" / path.name
        with open_cache(path, "faces") as f, h5_writer(apath, "audio", creator="tests") as fa:
            fa.attrs["lld_names"] = [f"l{i}" for i in range(6)]
            fa.attrs["functional_names"] = ["f0"]
            for clip_id in f["clips"]:
                rec = read_clip(f, clip_id)
                n = len(rec.data.get("has_face", []))
                emo = clip_id.split("_")[1]
                lld = centers[EMOTIONS.index(emo)] + rng.normal(0, 1, (n, 6))
                data = {
                    "lld": lld.astype(np.float32),
                    "lld_mask": np.ones(n, bool),
                    "functionals": np.zeros(1),
                }
                write_clip(
                    fa, clip_id, data if n else {}, split=rec.split, label=rec.label, status=rec.status
                )
        out.append(str(apath))
    return out


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Face caches → fine-tuned mini-Xception → its feature caches → a GRU and early fusion (a)."""
    root = tmp_path_factory.mktemp("e2e")
    faces = write_face_caches(root, clips_per_class=2, seed=0)
    cnn = {"device": "cpu", "input_size": 32, "frames_per_clip": 4, "pretrained": "none"}
    cnn = validate_config({"cnn": cnn})["cnn"]
    cnn["train"]["epochs"] = 2
    folder = root / "cnn"
    finetune(
        "mini_xception", faces, cnn, model_path=folder / "model.pt",
        predictions_path=folder / "predictions.csv", metrics_path=folder / "metrics.json", seed=0,
    )  # fmt: skip
    features = []
    for path in faces:
        out = root / "features" / path.name
        extract_features(folder / "model.pt", path, out, device="cpu")
        features.append(str(out))
    audio = _audio_caches(faces, root)
    models = {}
    for name, args, audio_paths in [
        ("gru_mini_xception", {**SEQ, "window": 8, "stride": 4}, []),
        ("earlya_mini_xception", {"freeze": True, "fc_sizes": [8], **SEQ, "window": 8, "stride": 4}, audio),
    ]:
        args = {k: v for k, v in args.items() if not (name.startswith("early") and k == "attention_dim")}
        out = root / name
        out.mkdir()
        train_sequence_model(
            name, model_args=args, train={**TRAIN, "epochs": 4}, feature_paths=features,
            audio_paths=audio_paths, seed=0, out_model=out / "model.pt",
            out_predictions=out / "predictions.csv", out_metrics=out / "metrics.json",
        )  # fmt: skip
        models[name] = out
    return {
        "root": root,
        "faces": [str(p) for p in faces],
        "audio": audio,
        "cnn": folder / "model.pt",
        **models,
    }


@pytest.mark.parametrize("name", ["gru_mini_xception", "earlya_mini_xception"])
def test_starts_exactly_at_the_two_stage_model(stages, name):
    ckpt = torch.load(stages[name] / "model.pt", map_location="cpu", weights_only=True)
    model = from_stages(stages["cnn"], ckpt).eval()
    data = EndToEndData(model, ckpt, stages["faces"], stages["audio"] if "early" in name else [], None)
    two_stage = pd.read_csv(stages[name] / "predictions.csv").set_index("clip_id")
    rows = np.flatnonzero(data.visible)
    assert len(rows) >= 30 and not data.visible.all()  # the faceless clips are left to the fallback
    got = clip_logits(model, data, rows, torch.device("cpu"), batch_size=3)
    want = two_stage.loc[data.clips["clip_id"].iloc[rows], [f"z_{e}" for e in EMOTIONS]].to_numpy()
    np.testing.assert_allclose(got, want, atol=2e-4)
    data.close()


def _e2e(stages, out, name="gru_mini_xception", **train):
    return train_end_to_end(
        f"e2e_{name}", cnn_path=stages["cnn"], sequence_path=stages[name] / "model.pt",
        face_paths=stages["faces"], audio_paths=stages["audio"] if "early" in name else [],
        train={**TRAIN, **train}, out_model=out / "model.pt", out_predictions=out / "predictions.csv",
        out_metrics=out / "metrics.json", seed=0, resume_dir=out,
    )  # fmt: skip


def _cnn_changed(stages, out) -> tuple[bool, bool]:
    """Whether the end-to-end run changed the CNN's weights / its batch-norm statistics."""
    before, _ = load_face_model(stages["cnn"])
    after, _ = load_end_to_end(out / "model.pt")
    a, b = before.state_dict(), after.cnn.state_dict()
    weights = any(not torch.equal(a[k], b[k]) for k in a if k.endswith("weight") and "head" not in k)
    stats = any(not torch.equal(a[k], b[k]) for k in a if k.endswith("running_mean"))
    return weights, stats


def test_trains_the_cnn_and_the_sequence_model(stages, tmp_path):
    # no augmentation (the GRU saw unaugmented features), the CNN at a 100x smaller rate
    fit = {"epochs": 6, "augment": "none", "cnn_lr_factor": 0.01}
    metrics = _e2e(stages, tmp_path, **fit)
    assert _cnn_changed(stages, tmp_path) == (True, False)  # weights train, batch-norm statistics frozen
    after, blob = load_end_to_end(tmp_path / "model.pt")
    seq = torch.load(stages["gru_mini_xception"] / "model.pt", weights_only=True)["state_dict"]
    assert not torch.equal(after.head.state_dict()["head.weight"], seq["head.weight"])
    assert blob["spec"]["name"] == "gru_mini_xception" and blob["name"] == "e2e_gru_mini_xception"
    loss = [h["loss"] for h in blob["history"]]
    assert loss[-1] < loss[0] - 0.15, loss  # measured 1.80 -> 1.48
    assert metrics["train"]["accuracy"] >= 0.35, metrics["train"]  # chance 1/7; measured 0.50
    df = pd.read_csv(tmp_path / "predictions.csv")
    assert len(df) == 42 and set(df["split"]) == {"train", "val", "test"}
    p = df[[f"p_{e}" for e in EMOTIONS]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    faceless = df[df["clip_id"] == "val_Angry_00"].iloc[0]
    assert faceless["status"] == "no_face"
    np.testing.assert_allclose(faceless[[f"p_{e}" for e in EMOTIONS]].astype(float), blob["prior"], atol=1e-5)
    assert metrics["val"]["n"] == 14
    assert not list(tmp_path.glob("resume-*.pt"))
    again = _e2e(stages, tmp_path / "again", **fit)  # the same config gives the same result
    assert again == metrics


def test_head_epochs_train_the_sequence_model_alone(stages, tmp_path):
    _e2e(stages, tmp_path, epochs=1, head_epochs=1)
    assert _cnn_changed(stages, tmp_path) == (False, False)  # frozen and in eval mode
    after, _ = load_end_to_end(tmp_path / "model.pt")
    seq = torch.load(stages["gru_mini_xception"] / "model.pt", weights_only=True)["state_dict"]
    assert not torch.equal(after.head.state_dict()["head.weight"], seq["head.weight"])


def test_early_fusion_end_to_end_hears(stages, tmp_path):
    metrics = _e2e(stages, tmp_path, name="earlya_mini_xception", epochs=1)
    assert _cnn_changed(stages, tmp_path)[0]
    _, blob = load_end_to_end(tmp_path / "model.pt")
    assert set(blob["norms"]) == {"audio"} and metrics["val"]["n"] == 14
    # the faceless val clip has audio: early fusion scores it (not the prior fallback)
    df = pd.read_csv(tmp_path / "predictions.csv").set_index("clip_id")
    p = df[[f"p_{e}" for e in EMOTIONS]]
    assert df.loc["val_Angry_00", "status"] == "no_face"
    assert not np.allclose(p.loc["val_Angry_00"], blob["prior"], atol=1e-3)
    with pytest.raises(AvferError, match="needs the audio caches"):
        train_end_to_end(
            "e2e_earlya_mini_xception", cnn_path=stages["cnn"],
            sequence_path=stages["earlya_mini_xception"] / "model.pt", face_paths=stages["faces"],
            train=TRAIN, out_model=tmp_path / "x.pt", out_predictions=tmp_path / "x.csv",
            out_metrics=tmp_path / "x.json",
        )  # fmt: skip


def test_wrong_stage_is_one_line(stages, tmp_path):
    with pytest.raises(AvferError, match="holds gru_mini_xception, not the sequence model of e2e_bgru"):
        train_end_to_end(
            "e2e_bgru_mini_xception", cnn_path=stages["cnn"],
            sequence_path=stages["gru_mini_xception"] / "model.pt", face_paths=stages["faces"],
            train=TRAIN, out_model=tmp_path / "m.pt", out_predictions=tmp_path / "p.csv",
            out_metrics=tmp_path / "m.json",
        )  # fmt: skip
