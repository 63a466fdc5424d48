"""avfer's shipped face model and the real data it was trained on (../shared/datasets).

The data tests need ``../shared/datasets`` (never committed): under ``CI=true`` they fail when it
is missing, elsewhere they skip with one line. FER2013 is parsed once for the module (~30 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.models import zoo

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
FER_CSV = DATA / "fer2013" / "fer2013_reconstructed.csv.gz"
FERPLUS = DATA / "fer2013" / "fer2013new.csv"
CKPLUS = DATA / "ckplus48.tar.gz"


def _need_data() -> None:
    if not (FER_CSV.is_file() and FERPLUS.is_file() and CKPLUS.is_file()):
        msg = f"real face data missing: {DATA} (see its README)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def fer2013():
    _need_data()
    from avfer.data.static import read_fer2013

    return read_fer2013(FER_CSV, size=48, chans=1)


@pytest.fixture(scope="module")
def ferplus():
    _need_data()
    from avfer.data.ferplus import read_ferplus

    return read_ferplus(FER_CSV, FERPLUS, size=48, chans=1)


def test_fer2013_counts_equal_the_shared_readme(fer2013):
    images, rows = fer2013
    assert images.shape == (35713, 48, 48, 1)
    # README: rows with pixels per Usage and class, in FER2013's order
    expected = {
        "train": [3971, 435, 4081, 7186, 4795, 3161, 4932],
        "val": [466, 56, 496, 891, 652, 414, 604],
        "test": [489, 55, 527, 876, 588, 414, 624],
    }
    fer_order = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    for split, counts in expected.items():
        got = rows[rows["split"] == split]["label"].value_counts()
        assert [int(got.get(e, 0)) for e in fer_order] == counts, split
    assert 170 not in set(rows["row"]) and 35883 not in set(rows["row"])  # rows without pixels


def test_ferplus_counts(ferplus):
    images, rows, dist = ferplus
    # 35,713 images with pixels; majority contempt 216, unknown 222, not-a-face 7 dropped
    assert len(rows) == 35713 - 216 - 222 - 7 == len(images) == len(dist)
    assert rows["split"].value_counts().to_dict() == {"train": 28221, "val": 3529, "test": 3518}
    np.testing.assert_allclose(dist.sum(1), 1.0, rtol=1e-5)
    # the majority of ten columns is the top of the 7-class distribution but for ties (first column wins)
    assert (dist.argmax(1) == np.array([EMOTIONS.index(x) for x in rows["label"]])).mean() > 0.95


def test_ckplus_counts_equal_the_shared_readme():
    _need_data()
    from avfer.data.ferplus import read_ckplus

    images, rows = read_ckplus(CKPLUS, size=48, chans=1, shares=(0.6, 0.2, 0.2))
    counts = rows["label"].value_counts().to_dict()  # README: 981 crops, contempt (54) dropped
    assert counts == {"Surprise": 249, "Happy": 207, "Disgust": 177, "Angry": 135, "Sad": 84, "Fear": 75}
    assert len(images) == 981 - 54
    assert (rows.groupby("group")["split"].nunique() == 1).all()


def test_shipped_weights_match_their_sha256_and_refuse_tampering(tmp_path, monkeypatch):
    entry = zoo.shipped_entry(zoo.DEFAULT_MODEL)
    path = zoo.shipped_weights(zoo.DEFAULT_MODEL)
    assert zoo.sha256(path) == entry["sha256"]
    assert path.stat().st_size <= 25 * 2**20
    fake = tmp_path / "assets"
    shutil.copytree(zoo.assets_dir(), fake)
    with open(fake / entry["file"], "r+b") as f:  # flip one byte in the middle
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(zoo, "assets_dir", lambda: fake)
    with pytest.raises(AvferError, match="sha256 .* differs from the recorded"):
        zoo.shipped_weights(zoo.DEFAULT_MODEL)
    with pytest.raises(AvferError, match="no shipped face model named 'nope'"):
        zoo.shipped_entry("nope")


def test_shipped_model_reproduces_its_recorded_accuracy(ferplus):
    from avfer.bundle import load_bundle
    from avfer.train.face_model import image_logits

    images, rows, _ = ferplus
    ref = zoo.shipped_entry(zoo.DEFAULT_MODEL)["reference"]
    test = np.flatnonzero((rows["split"] == "test").to_numpy())[: ref["n"]]  # first n in row order
    bundle = load_bundle(None)
    assert bundle.name.startswith("ferplus_")
    import torch

    logits = image_logits(bundle.face_model, images[test], torch.device("cpu"))
    y = np.array([EMOTIONS.index(x) for x in rows["label"].to_numpy()[test]])
    acc = float((logits.argmax(1) == y).mean())
    assert abs(acc - ref["accuracy"]) <= 0.015, (acc, ref)
    assert acc > 0.7  # far above the majority class (Neutral, ~0.37)


def test_avfer_predict_defaults_to_the_shipped_ferplus_model(pyfeat_media, tmp_path):
    out = tmp_path / "out"
    image = pyfeat_media / "single_face.jpg"
    cmd = [sys.executable, "-m", "avfer.cli", "predict", str(image), "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    summary = json.loads((out / "single_face.json").read_text())
    assert summary["model"] == f"ferplus_{zoo.shipped_entry('ferplus')['backbone']}"
    assert summary["status"] == "ok" and summary["label"] in EMOTIONS
    old = tmp_path / "old"
    cmd = [*cmd[:-2], "--out", str(old), "--model", "fer2013"]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    assert json.loads((old / "single_face.json").read_text())["model"] == "fer2013_mini_xception"
