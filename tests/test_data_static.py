"""Static pre-training datasets: FER2013, RAF-DB, AffectNet and image-folder adapters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from avfer.data.static import (
    list_affectnet,
    list_image_folder,
    list_rafdb,
    load_static,
    read_fer2013,
)
from avfer.datasets import DatasetError
from avfer.labels import EMOTIONS


def _img(path, value=128, size=(60, 50), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def _fer_csv(path, rows, usage=True):
    recs = []
    for code, value, use in rows:
        rec = {"emotion": code, "pixels": " ".join([str(value)] * 48 * 48)}
        if usage:
            rec["Usage"] = use
        recs.append(rec)
    pd.DataFrame(recs).to_csv(path, index=False)


def test_fer2013_maps_labels_and_usage(tmp_path):
    csv = tmp_path / "fer2013.csv"
    _fer_csv(csv, [(0, 10, "Training"), (4, 20, "PublicTest"), (6, 30, "PrivateTest"), (3, 40, "Training")])
    images, rows = read_fer2013(csv, size=48, chans=1)
    assert images.shape == (4, 48, 48, 1) and images[1, 0, 0, 0] == 20
    assert list(rows["label"]) == ["Angry", "Sad", "Neutral", "Happy"]  # FER2013 order → names
    assert list(rows["split"]) == ["train", "val", "test", "train"]
    rgb, _ = read_fer2013(csv, size=32, chans=3)
    assert rgb.shape == (4, 32, 32, 3) and rgb[3].min() == rgb[3].max() == 40
    _fer_csv(csv, [(1, 0, "")], usage=False)
    assert list(read_fer2013(csv)[1]["split"]) == ["train"]


def test_fer2013_errors_name_file_and_line(tmp_path):
    csv = tmp_path / "bad.csv"
    _fer_csv(csv, [(0, 1, "Training"), (7, 1, "Training")])
    with pytest.raises(DatasetError, match=r"bad.csv:3: unknown FER2013 emotion '7'"):
        read_fer2013(csv)
    csv.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    with pytest.raises(DatasetError, match=r"bad.csv:2: 3 pixel values"):
        read_fer2013(csv)
    csv.write_text("label,pixels\n")
    with pytest.raises(DatasetError, match="needs columns emotion, pixels"):
        read_fer2013(csv)
    with pytest.raises(DatasetError, match="does not exist"):
        read_fer2013(tmp_path / "nope.csv")


def _rafdb(root, lines):
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split()[0].removesuffix(".jpg")
        _img(root / "Image" / "aligned" / f"{stem}_aligned.jpg")


def test_rafdb_labels_splits_and_errors(tmp_path):
    root = tmp_path / "basic"
    _rafdb(root, ["train_00001.jpg 1", "train_00002.jpg 6", "test_0001.jpg 7", "test_0002.jpg 4"])
    rows = list_rafdb(root)
    assert list(rows["label"]) == ["Surprise", "Angry", "Neutral", "Happy"]
    assert list(rows["split"]) == ["train", "train", "test", "test"]
    (root / "Image" / "aligned" / "test_0002_aligned.jpg").unlink()
    with pytest.raises(DatasetError, match=r"list_patition_label.txt: 1 image file\(s\).*test_0002_aligned"):
        list_rafdb(root)
    bad = tmp_path / "bad"
    _rafdb(bad, ["train_00001.jpg 8"])
    with pytest.raises(DatasetError, match=r"list_patition_label.txt:1: expected '<name>.jpg <1-7>'"):
        list_rafdb(bad)
    with pytest.raises(DatasetError, match="label list"):
        list_rafdb(tmp_path)


def test_affectnet_drops_contempt_and_none_and_crops(tmp_path):
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,"
    header += "facial_landmarks,expression,valence,arousal"
    rows = [header]
    for i, code in enumerate([0, 1, 6, 7, 8, 9, 10, 3]):
        _img(tmp_path / "imgs" / "1" / f"{i}.jpg", value=20 * i, size=(80, 80))
        rows.append(f"1/{i}.jpg,10,10,40,40,,{code},0,0")
    csv = tmp_path / "training.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = list_affectnet(csv, tmp_path / "imgs", split="val")
    assert list(out["label"]) == ["Neutral", "Happy", "Angry", "Surprise"]
    assert set(out["split"]) == {"val"} and out["box"].iloc[0] == (10, 10, 40, 40)
    data = load_static(
        [{"format": "affectnet", "path": str(csv), "images": str(tmp_path / "imgs"), "split": "train"}],
        size=24,
        chans=1,
        val_fraction=0.0,
    )
    assert data.images.shape == (4, 24, 24, 1)
    csv.write_text(header + "\n1/0.jpg,0,0,1,1,,11,0,0\n")
    with pytest.raises(DatasetError, match=r"training.csv:2: unknown AffectNet expression '11'"):
        list_affectnet(csv, tmp_path / "imgs")
    csv.write_text(header + "\n1/missing.jpg,0,0,1,1,,1,0,0\n")
    with pytest.raises(DatasetError, match="missing.jpg"):
        list_affectnet(csv, tmp_path / "imgs")


def test_image_folder_flat_and_split_layouts(tmp_path):
    flat = tmp_path / "flat"
    for name in ["happiness", "Angry", "sad"]:
        _img(flat / name / "a.jpg")
        _img(flat / name / "b.png")
    (flat / "sad" / "notes.txt").write_text("ignored")
    rows = list_image_folder(flat, split="train")
    assert sorted(set(rows["label"])) == ["Angry", "Happy", "Sad"] and len(rows) == 6
    nested = tmp_path / "nested"
    _img(nested / "train" / "fear" / "a.jpg")
    _img(nested / "val" / "surprised" / "a.jpg")
    rows = list_image_folder(nested)
    assert list(zip(rows["split"], rows["label"], strict=True)) == [("train", "Fear"), ("val", "Surprise")]
    _img(tmp_path / "bad" / "bored" / "a.jpg")
    with pytest.raises(DatasetError, match=r"bored: unknown emotion label 'bored'"):
        list_image_folder(tmp_path / "bad")


def test_load_static_combines_and_carves_val(tmp_path):
    csv = tmp_path / "fer.csv"
    _fer_csv(csv, [(c, 5 * c, "Training") for c in range(7) for _ in range(10)])
    folder = tmp_path / "folder"
    for k in range(4):
        _img(folder / "Happy" / f"{k}.jpg", mode="L")
    data = load_static(
        [{"format": "fer2013", "path": str(csv)}, {"format": "folder", "path": str(folder), "name": "mine"}],
        size=32,
        chans=1,
        val_fraction=0.2,
        seed=0,
    )
    assert data.images.shape == (74, 32, 32, 1) and set(data.sources) == {"fer20130", "mine"}
    fer_val = (data.sources == "fer20130") & (data.splits == "val")
    assert np.bincount(data.labels[fer_val], minlength=7).tolist() == [2] * 7  # stratified
    happy = EMOTIONS.index("Happy")
    assert (data.labels[data.sources == "mine"] == happy).all()
    small = load_static([{"format": "fer2013", "path": str(csv), "max_images": 20}], size=48, chans=1)
    assert len(small.labels) == 20
    with pytest.raises(DatasetError, match="empty"):
        load_static([], size=48, chans=1)
