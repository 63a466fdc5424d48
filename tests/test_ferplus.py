"""FER+ and CK+48 adapters, soft-label training targets and the face-model recipe's pieces
(synthetic files; the real data's counts are checked in test_face_model.py)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from avfer.data.ferplus import FERPLUS_COLUMNS, read_ckplus, read_ferplus, subject_splits
from avfer.data.frames import ImageBatches
from avfer.data.static import load_static, one_hot, read_fer2013
from avfer.datasets.adapters import DatasetError
from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.models.face import FaceModel
from avfer.train.face_model import adjust_bias, choose_tau, label_prior


def _fer_csv(path, rows):
    lines = ["emotion,pixels,Usage"]
    for emotion, usage, value in rows:
        pixels = "" if value is None else " ".join([str(value)] * 4)  # 2x2 images
        lines.append(f"{emotion},{pixels},{usage}")
    path.write_text("\n".join(lines) + "\n")


def _votes_csv(path, rows):
    header = ["Usage", "Image name", *FERPLUS_COLUMNS]
    pd.DataFrame([[u, f"fer{i:07d}.png", *v] for i, (u, v) in enumerate(rows)], columns=header).to_csv(
        path, index=False
    )


def test_ferplus_majority_distribution_and_drops(tmp_path):
    fer, votes = tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv"
    #                neu hap sur sad ang dis fea con unk NF
    _fer_csv(
        fer,
        [(0, "Training", 10), (3, "Training", 20), (6, "PublicTest", 30), (2, "PrivateTest", 40),
         (1, "Training", None), (4, "Training", 50), (5, "PrivateTest", 60)],
    )  # fmt: skip
    _votes_csv(
        votes,
        [("Training", [1, 0, 0, 0, 6, 2, 0, 1, 0, 0]),   # anger majority; contempt vote dropped
         ("Training", [4, 4, 0, 0, 0, 0, 0, 0, 2, 0]),   # tie neutral/happiness -> neutral (column order)
         ("PublicTest", [0, 0, 0, 0, 0, 0, 0, 6, 4, 0]), # contempt majority: dropped
         ("PrivateTest", [0, 0, 0, 0, 0, 0, 3, 0, 0, 7]),# not a face: dropped
         ("Training", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # no pixels: dropped before
         ("Training", [0, 0, 0, 2, 0, 0, 0, 0, 8, 0]),   # unknown majority: dropped
         ("PrivateTest", [0, 1, 9, 0, 0, 0, 0, 0, 0, 0])],
    )  # fmt: skip
    images, rows, dist = read_ferplus(fer, votes, size=2, chans=1)
    assert list(rows["row"]) == [0, 1, 6]
    assert list(rows["label"]) == ["Angry", "Neutral", "Surprise"]
    assert list(rows["split"]) == ["train", "train", "test"]
    assert list(rows["fer2013_label"]) == ["Angry", "Happy", "Surprise"]  # FER2013's own labels kept
    assert images[:, 0, 0, 0].tolist() == [10, 20, 60]
    np.testing.assert_allclose(dist.sum(1), 1.0, rtol=1e-6)
    e = EMOTIONS.index
    np.testing.assert_allclose(
        dist[0, [e("Angry"), e("Disgust"), e("Neutral")]], [6 / 9, 2 / 9, 1 / 9], rtol=1e-6
    )
    np.testing.assert_allclose(dist[1, [e("Neutral"), e("Happy")]], [0.5, 0.5])
    np.testing.assert_allclose(dist[2, [e("Surprise"), e("Happy")]], [0.9, 0.1], rtol=1e-6)


def test_ferplus_errors_name_the_file(tmp_path):
    fer, votes = tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv"
    _fer_csv(fer, [(0, "Training", 1), (1, "PublicTest", 2)])
    _votes_csv(votes, [("Training", [1] * 10), ("PrivateTest", [1] * 10)])
    with pytest.raises(DatasetError, match="fer2013new.csv:3: Usage 'PrivateTest' differs"):
        read_ferplus(fer, votes, size=2)
    with pytest.raises(DatasetError, match="missing.csv: FER\\+ label csv"):
        read_ferplus(fer, tmp_path / "missing.csv", size=2)
    _votes_csv(votes, [("Training", [1] * 10)])
    with pytest.raises(DatasetError, match="not the same order"):
        read_ferplus(fer, votes, size=2)


def test_fer2013_drops_rows_without_pixels_and_keeps_row_numbers(tmp_path):
    csv = tmp_path / "fer.csv.gz"
    plain = tmp_path / "fer.csv"
    _fer_csv(plain, [(0, "Training", 1), (1, "Training", None), (9, "PublicTest", 3)])
    import gzip

    csv.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(DatasetError, match="fer.csv.gz:4: unknown FER2013 emotion '9'"):
        read_fer2013(csv, size=2)  # the file's own line number, counting the dropped row
    _fer_csv(plain, [(0, "Training", 1), (1, "Training", None), (3, "PublicTest", 3)])
    images, rows = read_fer2013(plain, size=2)
    assert list(rows["row"]) == [0, 2] and len(images) == 2


def _ck_tar(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, value in files:
            buf = io.BytesIO()
            Image.fromarray(np.full((48, 48), value, np.uint8)).save(buf, format="PNG")
            info = tarfile.TarInfo(name)
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


def test_ckplus_labels_subjects_and_subject_split(tmp_path):
    files = []
    for k in range(10):
        for emotion in ("anger", "happy", "contempt", "surprise"):
            files.append((f"CK+48/{emotion}/S{k:03d}_001_0000001{k % 3}.png", k * 10))
    _ck_tar(tmp_path / "ck.tar.gz", files)
    images, rows = read_ckplus(tmp_path / "ck.tar.gz", size=32, chans=1, shares=(0.6, 0.2, 0.2), seed=0)
    assert len(rows) == 30 and images.shape == (30, 32, 32, 1)  # contempt dropped
    assert set(rows["label"]) == {"Angry", "Happy", "Surprise"}
    by_subject = rows.groupby("group")["split"].nunique()
    assert (by_subject == 1).all()  # no person in two splits
    assert rows.groupby("split")["group"].nunique().to_dict() == {"test": 2, "train": 6, "val": 2}
    assert subject_splits([f"S{k}" for k in range(10)], (0.6, 0.2, 0.2), 0) == subject_splits(
        [f"S{k}" for k in reversed(range(10))], (0.6, 0.2, 0.2), 0
    )  # order-independent
    folder = tmp_path / "folder"
    (folder / "fear").mkdir(parents=True)
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(folder / "fear" / "S005_002_00000003.png")
    _, rows = read_ckplus(folder)
    assert list(rows["label"]) == ["Fear"] and list(rows["split"]) == ["test"]
    (folder / "fear" / "photo.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="photo.png: expected a CK\\+ name"):
        read_ckplus(folder)


def test_load_static_soft_targets_and_repeat(tmp_path):
    fer, votes = tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv"
    _fer_csv(fer, [(0, "Training", 10), (3, "PublicTest", 20)])
    _votes_csv(
        votes, [("Training", [2, 0, 0, 0, 8, 0, 0, 0, 0, 0]), ("PublicTest", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0])]
    )
    entry = {"format": "ferplus", "path": str(fer), "labels": str(votes), "name": "ferplus", "repeat": 3}
    data = load_static([entry], size=8, chans=1, val_fraction=0.0)
    assert list(data.splits) == ["val", "train", "train", "train"]
    assert data.soft[1, EMOTIONS.index("Angry")] == pytest.approx(0.8)
    hard = load_static([{**entry, "soft_labels": False, "repeat": 1}], size=8, chans=1, val_fraction=0.0)
    np.testing.assert_array_equal(hard.soft, one_hot(hard.labels))


def test_soft_loss_of_one_hot_targets_equals_hard_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(16, 7)
    labels = np.random.default_rng(0).integers(0, 7, 16)
    images = np.zeros((16, 2, 2, 1), np.uint8)
    _, soft = ImageBatches(images, one_hot(labels))[list(range(16))]
    _, hard = ImageBatches(images, labels)[list(range(16))]
    assert soft.dtype == torch.float32 and soft.shape == (16, 7) and hard.dtype == torch.int64
    loss = torch.nn.CrossEntropyLoss()
    assert float(loss(logits, soft)) == pytest.approx(float(loss(logits, hard)), abs=1e-6)


def test_logit_adjustment_choice_and_bias():
    rng = np.random.default_rng(0)
    y = np.concatenate([np.zeros(90, int), np.ones(10, int)])
    z = np.full((100, 7), -30.0)  # classes 2-6: absent from training and from the scores
    z[:, 0] = 2.0 + rng.normal(0, 0.1, 100)  # a model biased to the majority class
    z[:, 1] = np.where(y == 1, 1.2, 0.4) + rng.normal(0, 0.1, 100)
    prior = label_prior(y)
    tau, table = choose_tau({"a_val": z}, {"a_val": y}, np.log(prior), [0.0, 0.5, 1.0], ["a_val.uar"])
    assert [r["tau"] for r in table] == [0.0, 0.5, 1.0]
    assert table[0]["a_val.uar"] == 0.5 and table[1]["a_val.uar"] == 1.0 and tau == 0.5
    model = FaceModel("resnet10t", input_size=32, in_chans=1, augment="none").eval()
    x = torch.randint(0, 255, (3, 32, 32, 1), dtype=torch.uint8)
    before = model(x)
    shift = np.arange(7, dtype=np.float32)
    adjust_bias(model, shift)
    torch.testing.assert_close(model(x), before + torch.as_tensor(shift), rtol=0, atol=1e-5)


def test_flip_tta_averages_the_mirror_image_in_eval_only():
    torch.manual_seed(0)
    model = FaceModel("resnet10t", input_size=32, in_chans=1, augment="none", tta="flip").eval()
    x = torch.randint(0, 255, (2, 32, 32, 1), dtype=torch.uint8)
    plain = FaceModel("resnet10t", input_size=32, in_chans=1, augment="none").eval()
    plain.load_state_dict(model.state_dict())
    want = (plain(x) + plain(x.flip(2))) / 2  # uint8 [N, H, W, C]: the width axis is 2
    torch.testing.assert_close(model(x), want, rtol=0, atol=1e-5)
    model.train()
    plain.train()
    torch.testing.assert_close(model.transform(x), plain.transform(x))
    with pytest.raises(AvferError, match="tta 'twice' is not one of none, flip"):
        FaceModel("resnet10t", input_size=32, in_chans=1, tta="twice")
