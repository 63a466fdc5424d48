"""Dataset adapters on fixture trees, sample-sheet validation and sharding."""

from pathlib import Path

import pytest

from avfer.datasets import (
    DatasetError,
    assign_shards,
    build_sample_sheet,
    from_afew,
    from_cremad,
    from_manifest,
    from_ravdess,
    read_sample_sheet,
    shard_clips,
    write_sample_sheet,
)
from avfer.datasets.sheet import check_rows

AFEW_SPLITS = {"train": "Train_AFEW", "val": "Val_AFEW", "test": "Test_AFEW"}


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


@pytest.fixture
def afew_root(tmp_path: Path) -> Path:
    for split, n in (("Train_AFEW", 3), ("Val_AFEW", 2)):
        for emo in ("Angry", "Happy", "Surprise"):
            for i in range(n):
                _touch(tmp_path / split / emo / f"{split[0]}{emo[:2]}{i:04d}.avi")
    for i in range(4):
        _touch(tmp_path / "Test_AFEW" / f"t{i:05d}.avi")
    _touch(tmp_path / "Train_AFEW" / "Happy" / "notes.txt")  # not a video: ignored
    return tmp_path


def test_afew_tree(afew_root):
    rows = from_afew(afew_root, AFEW_SPLITS)
    sheet = check_rows(rows)
    assert sheet.groupby("split").size().to_dict() == {"test": 4, "train": 9, "val": 6}
    assert set(sheet[sheet.split == "test"]["label"]) == {""}
    assert set(sheet[sheet.split == "train"]["label"]) == {"Angry", "Happy", "Surprise"}


def test_afew_unknown_emotion_folder(afew_root):
    _touch(afew_root / "Val_AFEW" / "Contempt" / "x.avi")
    with pytest.raises(DatasetError, match=r"Contempt.*unknown emotion label"):
        from_afew(afew_root, AFEW_SPLITS)


def test_afew_missing_split_folder(afew_root):
    with pytest.raises(DatasetError, match="Nope_AFEW.*does not exist"):
        from_afew(afew_root, {"train": "Train_AFEW", "val": "Nope_AFEW"})


def test_manifest(tmp_path):
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        _touch(tmp_path / "clips" / name)
    csv = tmp_path / "m.csv"
    csv.write_text("path,split,label\nclips/a.mp4,train,happiness\nclips/b.mp4,val,ANG\nclips/c.mp4,test,\n")
    sheet = check_rows(from_manifest(csv))
    assert sheet["label"].tolist() == ["Happy", "Angry", ""]
    assert Path(sheet["path"][0]).is_absolute() or Path(sheet["path"][0]).exists()


def test_manifest_bad_label_names_line(tmp_path):
    _touch(tmp_path / "a.mp4")
    csv = tmp_path / "m.csv"
    csv.write_text("path,split,label\na.mp4,train,bored\n")
    with pytest.raises(DatasetError, match=r"m\.csv:2: unknown emotion label 'bored'"):
        from_manifest(csv)


def test_missing_file_named(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("path,split,label\ngone.mp4,train,Happy\n")
    with pytest.raises(DatasetError, match=r"gone\.mp4: video file .* does not exist"):
        check_rows(from_manifest(csv))


def test_duplicate_ids_and_bad_split(tmp_path):
    _touch(tmp_path / "x" / "a.mp4")
    _touch(tmp_path / "y" / "a.mp4")
    csv = tmp_path / "m.csv"
    csv.write_text("path,split,label\nx/a.mp4,train,Happy\ny/a.mp4,val,Sad\n")
    with pytest.raises(DatasetError, match="clip id 'a' is used by more than one file"):
        check_rows(from_manifest(csv))
    csv.write_text("path,split,label\nx/a.mp4,dev,Happy\n")
    with pytest.raises(DatasetError, match="split 'dev'"):
        check_rows(from_manifest(csv))
    csv.write_text("path,split,label\nx/a.mp4,train,\n")
    with pytest.raises(DatasetError, match="has no label"):
        check_rows(from_manifest(csv))


def test_ravdess(tmp_path):
    names = [
        "01-01-05-01-01-01-01.mp4",  # AV, angry, actor 1 -> train
        "02-01-03-01-01-01-01.mp4",  # video-only: skipped
        "01-01-02-01-01-01-02.mp4",  # calm: dropped by default
        "01-01-08-02-01-01-21.mp4",  # surprised, actor 21 -> val
        "01-01-06-01-01-01-24.mp4",  # fearful, actor 24 -> test
    ]
    for n in names:
        _touch(tmp_path / "Actor_xx" / n)
    rows = from_ravdess(tmp_path)
    assert sorted((r["split"], r["label"]) for r in rows) == [
        ("test", "Fear"),
        ("train", "Angry"),
        ("val", "Surprise"),
    ]
    rows = from_ravdess(tmp_path, calm_as="Neutral")
    assert ("train", "Neutral") in [(r["split"], r["label"]) for r in rows]
    _touch(tmp_path / "bad-name.mp4")
    with pytest.raises(DatasetError, match=r"bad-name\.mp4: not a RAVDESS file name"):
        from_ravdess(tmp_path)


def test_cremad(tmp_path):
    for n in ("1001_DFA_ANG_XX.flv", "1083_IEO_HAP_HI.flv", "1090_TIE_SAD_LO.flv"):
        _touch(tmp_path / n)
    rows = from_cremad(tmp_path)
    assert [(r["split"], r["label"]) for r in rows] == [("train", "Angry"), ("val", "Happy"), ("test", "Sad")]
    _touch(tmp_path / "1002_DFA_BOR_XX.flv")
    with pytest.raises(DatasetError, match=r"1002_DFA_BOR_XX\.flv: unknown CREMA-D emotion 'BOR'"):
        from_cremad(tmp_path)


def test_shards_and_roundtrip(afew_root, tmp_path):
    cfg = {"format": "afew", "root": str(afew_root), "afew_splits": AFEW_SPLITS, "shard_size": 4}
    sheet = build_sample_sheet(cfg)
    assert sorted(sheet["shard"].unique()) == [
        "test-000",
        "train-000",
        "train-001",
        "train-002",
        "val-000",
        "val-001",
    ]
    assert sheet.groupby("shard").size().max() == 4
    assert list(sheet["split"].unique()) == ["train", "val", "test"]
    write_sample_sheet(sheet, tmp_path / "s.csv")
    back = read_sample_sheet(tmp_path / "s.csv")
    assert back.equals(sheet.astype(str))
    assert len(shard_clips(back, "train-002")) == 1
    with pytest.raises(DatasetError, match="shard 'val-009'"):
        shard_clips(back, "val-009")


def test_sharding_is_deterministic_regardless_of_row_order(afew_root):
    sheet = check_rows(from_afew(afew_root, AFEW_SPLITS))
    a = assign_shards(sheet, 3)
    b = assign_shards(sheet.sample(frac=1, random_state=1), 3)
    assert a.equals(b)
