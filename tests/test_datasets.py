"""Dataset adapters on fixture trees, sample-sheet validation and sharding."""

import re
from pathlib import Path

import h5py
import pandas as pd
import pytest

from avfer.datasets import (
    DatasetError,
    assign_shards,
    build_sample_sheet,
    from_afew,
    from_cremad,
    from_dfew,
    from_ferv39k,
    from_mafw,
    from_manifest,
    from_ravdess,
    read_sample_sheet,
    shard_clips,
    write_sample_sheet,
)
from avfer.datasets.adapters import derive_clip_ids, is_safe_clip_id
from avfer.datasets.sheet import check_rows
from avfer.io import h5_writer, write_clip

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
    ids = check_rows(from_manifest(csv))["clip_id"].tolist()  # same stem: both get a path hash
    assert len(set(ids)) == 2 and all(re.fullmatch(r"a-[0-9a-f]{8}", i) for i in ids)
    csv.write_text("path,split,label,clip_id\nx/a.mp4,train,Happy,a\ny/a.mp4,val,Sad,a\n")
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


# Real odd names: spaces, accents, CJK, dots, shell-hostile characters, and slug collisions.
ODD_NAMES = [
    "plain_01.mp4",  # already safe: keeps its stem
    "my clip (take 2).mp4",
    "café-crème.MP4",
    "中文.mp4",
    "v1.2.final.mkv",
    "it's $HOME; rm -rf {x} & `ls` #1.avi",
    "a b.mp4",  # slug a_b ...
    "a+b.mp4",  # ... the same slug
    "a_b.mp4",  # the clean owner of 'a_b'
    ".hidden.mp4",
    "voice only.wav",  # audio-only files are clips too
]
SNAKEMAKE_WILDCARD = re.compile(r"[^/{}\s]+")  # what a wildcard value must avoid


def _odd_manifest(tmp_path: Path, names=ODD_NAMES) -> Path:
    lines = ["path,split,label"]
    for i, name in enumerate(names):
        _touch(tmp_path / "clips" / name)
        quoted = '"' + f"clips/{name}".replace('"', '""') + '"'
        lines.append(f"{quoted},{('train', 'val', 'test')[i % 3]},Happy")
    csv = tmp_path / "m.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv


def test_odd_file_names_get_safe_unique_stable_ids(tmp_path):
    csv = _odd_manifest(tmp_path)
    rows = from_manifest(csv)
    ids = [r["clip_id"] for r in rows]
    by_name = {Path(r["path"]).name: r["clip_id"] for r in rows}
    assert len(set(ids)) == len(ids) == len(ODD_NAMES)
    for cid in ids:
        assert is_safe_clip_id(cid) and cid.isascii() and len(cid) <= 100, cid
        assert SNAKEMAKE_WILDCARD.fullmatch(cid), cid
    assert by_name["plain_01.mp4"] == "plain_01"
    assert by_name["a_b.mp4"] == "a_b"
    assert re.fullmatch(r"my_clip_take_2-[0-9a-f]{8}", by_name["my clip (take 2).mp4"])
    assert re.fullmatch(r"cafe-creme-[0-9a-f]{8}", by_name["café-crème.MP4"])
    assert re.fullmatch(r"clip-[0-9a-f]{8}", by_name["中文.mp4"])
    assert by_name["v1.2.final.mkv"] == "v1.2.final"  # dots are safe inside an id
    assert re.fullmatch(r"hidden-[0-9a-f]{8}", by_name[".hidden.mp4"])
    assert re.fullmatch(r"voice_only-[0-9a-f]{8}", by_name["voice only.wav"])
    a_space, a_plus = by_name["a b.mp4"], by_name["a+b.mp4"]
    assert a_space != a_plus and a_space.startswith("a_b-") and a_plus.startswith("a_b-")
    # stable: the same files give the same ids, in any order and with other files added
    assert from_manifest(csv) == rows
    _touch(tmp_path / "clips" / "z new.mp4")
    header, *lines = csv.read_text(encoding="utf-8").splitlines()
    csv.write_text("\n".join([header, "clips/z new.mp4,train,Sad", *reversed(lines)]), encoding="utf-8")
    again = {Path(r["path"]).name: r["clip_id"] for r in from_manifest(csv)}
    assert {k: again[k] for k in by_name} == by_name


def test_odd_file_names_survive_the_sheet_and_hdf5(tmp_path):
    csv = _odd_manifest(tmp_path)
    sheet = build_sample_sheet({"format": "manifest", "manifest": str(csv), "shard_size": 50})
    write_sample_sheet(sheet, tmp_path / "s.csv")
    back = read_sample_sheet(tmp_path / "s.csv")
    assert sorted(Path(p).name for p in back["path"]) == sorted(ODD_NAMES)  # original path kept
    assert all(Path(p).is_file() for p in back["path"])
    with h5_writer(tmp_path / "c.h5", "features", creator="test") as f:
        for cid in back["clip_id"]:
            write_clip(f, cid, {}, split="train", status="failed", error="x")
    with h5py.File(tmp_path / "c.h5") as f:
        assert sorted(f["clips"]) == sorted(back["clip_id"])
    for cid in back["clip_id"]:  # a file name of the EmotiW submission
        (tmp_path / "sub" / f"{cid}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / "sub" / f"{cid}.txt").write_text("Happy")
    assert len(list((tmp_path / "sub").iterdir())) == len(ODD_NAMES)


def test_afew_tree_with_odd_names(tmp_path):
    _touch(tmp_path / "Train" / "Happy" / "Été à Paris.avi")
    _touch(tmp_path / "Train" / "Happy" / "000123.avi")
    _touch(tmp_path / "Train" / "Sad" / "Été à Paris.avi")  # same name in another folder
    _touch(tmp_path / "Val" / "Sad" / "speech.m4a")
    rows = from_afew(tmp_path, {"train": "Train", "val": "Val"})
    ids = {(Path(r["path"]).parent.name, Path(r["path"]).name): r["clip_id"] for r in rows}
    assert ids[("Happy", "000123.avi")] == "000123"
    happy, sad = ids[("Happy", "Été à Paris.avi")], ids[("Sad", "Été à Paris.avi")]
    assert happy != sad and happy.startswith("Ete_a_Paris-") and sad.startswith("Ete_a_Paris-")
    assert ids[("Sad", "speech.m4a")] == "speech"
    assert {r["group"] for r in rows} == {""}
    assert len(check_rows(rows)) == 4


def test_derive_clip_ids_rules():
    ids = derive_clip_ids(["a/x.mp4", "b/x.mp4", "c/y.mp4"])
    assert ids[2] == "y" and ids[0] != ids[1] and ids[0].startswith("x-")
    assert ids[0] == derive_clip_ids(["a/x.mp4", "zz/x.mp4"])[0]  # the hash is of its own path
    assert derive_clip_ids(["y.mp4"], taken=["y"])[0].startswith("y-")  # an explicit id wins
    long = derive_clip_ids(["n" * 300 + ".mp4"])[0]
    assert len(long) <= 100 and is_safe_clip_id(long)
    assert derive_clip_ids(["e\u0301.mp4"]) == derive_clip_ids(["\u00e9.mp4"])  # NFD == NFC name
    for bad in ("", "a/b", "a b", "-a", "a.", "..", "a..b", "é", "x" * 101, "{x}"):
        assert not is_safe_clip_id(bad), bad


def test_manifest_explicit_clip_id_validated_and_group(tmp_path):
    _touch(tmp_path / "one.mp4")
    _touch(tmp_path / "two.mp4")
    csv = tmp_path / "m.csv"
    csv.write_text("path,split,label,clip_id,group\none.mp4,train,Happy,c1,spk A\ntwo.mp4,val,Sad,,\n")
    rows = from_manifest(csv)
    assert [(r["clip_id"], r["group"]) for r in rows] == [("c1", "spk A"), ("two", "")]
    csv.write_text("path,split,label,clip_id\none.mp4,train,Happy,../etc\n")
    with pytest.raises(DatasetError, match=r"m\.csv:2: clip_id '\.\./etc' of one\.mp4 is not safe"):
        from_manifest(csv)
    csv.write_text("path,split,label,clip_id\none.mp4,train,Happy,spk 1\n")
    with pytest.raises(DatasetError, match="not safe"):
        from_manifest(csv)


def test_ravdess_and_cremad_groups(tmp_path):
    _touch(tmp_path / "r" / "Actor_01" / "01-01-05-01-01-01-01.mp4")
    _touch(tmp_path / "r" / "Actor_21" / "01-01-08-02-01-01-21.mp4")
    rows = from_ravdess(tmp_path / "r")
    assert [(r["clip_id"], r["group"]) for r in rows] == [
        ("01-01-05-01-01-01-01", "Actor_01"),
        ("01-01-08-02-01-01-21", "Actor_21"),
    ]
    _touch(tmp_path / "c" / "1001_DFA_ANG_XX.flv")
    _touch(tmp_path / "c" / "1083_IEO_HAP_HI.flv")
    rows = from_cremad(tmp_path / "c")
    assert [(r["clip_id"], r["group"]) for r in rows] == [
        ("1001_DFA_ANG_XX", "1001"),
        ("1083_IEO_HAP_HI", "1083"),
    ]


def test_shards_beyond_999(tmp_path):
    from avfer.datasets import assign_shards

    df = pd.DataFrame(
        {"clip_id": [f"c{i:05d}" for i in range(1002)], "path": "x", "split": "train", "label": "Happy"}
    )
    shards = assign_shards(df, 1)["shard"]
    assert shards.iloc[-1] == "train-1001" and shards.is_unique
    smk = (Path(__file__).resolve().parents[1] / "rules" / "common.smk").read_text()
    pattern = re.search(r'shard=r"([^"]+)"', smk).group(1)
    assert all(re.fullmatch(pattern, s) for s in ("train-000", "val-999", "train-1001", "test-12345"))


def test_sheet_sources_are_index_files_and_clip_folders(tmp_path):
    """What build_sample_sheet depends on, without walking the tree: the adapter's index files and
    the folders of the clips the last sheet listed (a file added, removed or renamed in one changes
    its time); files the adapter never lists do not count."""
    import os

    from avfer.datasets import build_sample_sheet, dataset_sources

    root = tmp_path / "data"
    for split, folder in (("train", "Train_AFEW"), ("val", "Val_AFEW")):
        _touch(root / folder / "Happy" / f"{split}1.avi")
    (root / "notes").mkdir()
    _touch(root / "notes" / "readme.txt")
    cfg = {"format": "afew", "root": str(root), "afew_splits": {"train": "Train_AFEW", "val": "Val_AFEW"}}
    # no sheet yet: the root and the split folders
    assert dataset_sources(cfg) == sorted([str(root), str(root / "Train_AFEW"), str(root / "Val_AFEW")])
    sheet = build_sample_sheet({**cfg, "shard_size": 4})
    sources = dataset_sources(cfg, sheet)
    assert str(root / "Train_AFEW" / "Happy") in sources and str(root / "notes") not in sources
    happy = root / "Train_AFEW" / "Happy"
    os.utime(happy, ns=(1, 1))
    _touch(happy / "train2.avi")  # a new clip: its folder's time moves on
    assert os.stat(happy).st_mtime_ns > 1
    dfew = {"format": "dfew", "root": str(tmp_path / "dfew")}
    _touch(tmp_path / "dfew" / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv")
    assert str(tmp_path / "dfew" / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv") in (
        dataset_sources(dfew)
    )  # only the fold files that exist: the adapter names a missing one
    manifest = {"format": "manifest", "manifest": str(tmp_path / "m.csv"), "root": str(root)}
    (tmp_path / "m.csv").write_text("path,split\n")
    assert dataset_sources(manifest, sheet) == [str(tmp_path / "m.csv")]


@pytest.mark.integration
def test_parse_never_stats_the_dataset_and_an_added_clip_rebuilds_the_sheet(tmp_path):
    """Snakemake parses the workflow (every cluster job does) without a stat of the dataset's files
    (a dangling link in the tree stopped the old parse-time walk), and a dry run after a clip is
    added to the dataset schedules build_sample_sheet again."""
    import os
    import subprocess
    import sys

    import yaml

    repo = Path(__file__).resolve().parents[1]
    snakemake = Path(sys.executable).with_name("snakemake")
    root = tmp_path / "data"
    for split, folder in (("train", "Train_AFEW"), ("val", "Val_AFEW")):
        _touch(root / folder / "Happy" / f"{split}1.avi")
    os.symlink(tmp_path / "gone.avi", root / "Train_AFEW" / "dangling.avi")
    results = tmp_path / "results"
    cfg = {"results": str(results), "dataset": {"format": "afew", "root": str(root)}}
    cfg["dataset"]["afew_splits"] = {"train": "Train_AFEW", "val": "Val_AFEW"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": f"{repo / 'src'}:{os.environ.get('PYTHONPATH', '')}"}

    def rebuilds() -> bool:
        """Whether a dry run schedules the sheet (a checkpoint: printed as one)."""
        cmd = [str(snakemake), "-n", "-s", str(repo / "Snakefile"), "-d", str(tmp_path)]
        cmd += ["--rerun-triggers", "mtime", "--configfile", str(tmp_path / "c.yaml")]
        cmd += ["--", str(results / "samples.csv")]  # mtime: the sheet was not written by Snakemake
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return (
            re.search(r"^(?:checkpoint|rule) build_sample_sheet:", proc.stdout + proc.stderr, re.M)
            is not None
        )

    from avfer.config import validate_config
    from avfer.datasets import build_sample_sheet, write_sample_sheet

    write_sample_sheet(build_sample_sheet(validate_config(cfg)["dataset"]), results / "samples.csv")
    future = os.stat(results / "samples.csv").st_mtime + 10
    os.utime(results / "samples.csv", (future, future))  # newer than every dataset folder
    assert not rebuilds()
    _touch(root / "Train_AFEW" / "Happy" / "train2.avi")
    for added in (root / "Train_AFEW" / "Happy" / "train2.avi", root / "Train_AFEW" / "Happy"):
        os.utime(added, (future + 10, future + 10))  # a clip added after the sheet was built
    assert rebuilds()


def test_dfew_official_folds(tmp_path):
    split_dir = tmp_path / "EmoLabel_DataSplit"
    labels = {1: 1, 2: 4, 3: 7, 4: 3, 5: 2, 6: 5, 7: 6, 8: 1, 9: 4, 10: 2}  # clip -> DFEW label
    for k in range(1, 6):
        clips = [c for c in labels if (c - 1) % 5 == k - 1]
        body = "video_name,label\n" + "".join(f"{c},{labels[c]}\n" for c in clips)
        (split_dir / "test(single-labeled)").mkdir(parents=True, exist_ok=True)
        (split_dir / "test(single-labeled)" / f"set_{k}.csv").write_text(body)
        (split_dir / "train(single-labeled)").mkdir(parents=True, exist_ok=True)
    for c in labels:
        _touch(tmp_path / "Clip" / "original" / f"part_{1 + c // 6}" / f"{c:05d}.mp4")
    _touch(tmp_path / "Clip" / "original" / "99999.mp4")  # on disk, in no fold file: not a sample
    rows = from_dfew(tmp_path)
    sheet = check_rows(rows)
    by_id = sheet.set_index("clip_id")
    assert (
        len(sheet) == 10
        and by_id.loc["00003", "label"] == "Fear"
        and by_id.loc["00004", "label"] == "Neutral"
    )
    assert by_id.loc["00001", "fold"] == "1" and by_id.loc["00001", "split"] == "test"
    assert by_id.loc["00007", "fold"] == "2" and by_id.loc["00007", "split"] == "val"
    assert by_id.loc["00010", "fold"] == "5" and by_id.loc["00010", "split"] == "train"
    from avfer.datasets.splits import assign_folds

    folds = assign_folds(sheet, 5, seed=0)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]  # the official folds drive dataset.folds
    (split_dir / "test(single-labeled)" / "set_2.csv").write_text("video_name,label\n42,3\n")
    with pytest.raises(DatasetError, match=r"set_2\.csv:2: no video file for DFEW clip 00042"):
        from_dfew(tmp_path)
    (split_dir / "test(single-labeled)" / "set_2.csv").write_text("video_name,label\n2,9\n")
    with pytest.raises(DatasetError, match=r"set_2\.csv:2: not a DFEW row"):
        from_dfew(tmp_path)
    (split_dir / "test(single-labeled)" / "set_5.csv").unlink()
    with pytest.raises(DatasetError, match=r"set_5\.csv: DFEW fold file does not exist"):
        from_dfew(tmp_path)


def test_mafw_official_folds_and_dropped_classes(tmp_path):
    split_dir = tmp_path / "Train & Test Set" / "single" / "no_caption"
    names = [
        "anger",
        "happiness",
        "contempt",
        "sadness",
        "surprise",
        "neutral",
        "fear",
        "disgust",
        "anxiety",
        "fear",
    ]
    for k in range(1, 6):
        (split_dir / f"set_{k}").mkdir(parents=True)
        lines = [f"{c + 1:05d}.mp4 {names[c]}" for c in range(len(names)) if c % 5 == k - 1]
        (split_dir / f"set_{k}" / "test.txt").write_text("\n".join(lines) + "\n")
        (split_dir / f"set_{k}" / "train.txt").write_text("")
    for c in range(len(names)):
        _touch(tmp_path / "data" / "clips" / f"{c + 1:05d}.mp4")
    sheet = check_rows(from_mafw(tmp_path))
    by_id = sheet.set_index("clip_id")
    assert len(sheet) == 8 and "00003" not in by_id.index and "00009" not in by_id.index  # contempt, anxiety
    assert by_id.loc["00002", "label"] == "Happy" and by_id.loc["00002", "fold"] == "2"
    assert by_id.loc["00006", "split"] == "test" and by_id.loc["00005", "split"] == "train"
    (split_dir / "set_3" / "test.txt").write_text("00004.mp4 boredom\n")
    with pytest.raises(DatasetError, match=r"set_3/test\.txt:1: unknown MAFW label 'boredom'"):
        from_mafw(tmp_path)


def test_ferv39k_official_split_and_stable_val(tmp_path):
    setups = tmp_path / "4_setups" / "All_scenes"
    setups.mkdir(parents=True)
    train, test = [], []
    for scene in ("Action", "Daily life"):
        for emo in ("Happy", "Sad", "Angry"):
            for c in range(1, 13):
                key = f"{scene}/{emo}/{c:04d}"
                _touch(tmp_path / "0_7_LabelClips" / scene / emo / f"{c:04d}.mp4")
                (test if c > 10 else train).append(f"{key} {emo}")
    (setups / "train_All.csv").write_text("\n".join(train) + "\n")
    (setups / "test_All.csv").write_text("\n".join(test) + "\n")
    sheet = check_rows(from_ferv39k(tmp_path))
    counts = sheet["split"].value_counts().to_dict()
    assert counts["test"] == 12 and counts["train"] + counts["val"] == 60 and 1 <= counts["val"] <= 15
    assert sheet["clip_id"].is_unique  # 0001 exists in every scene/emotion: ids get a path hash
    row = sheet[sheet["path"].str.endswith("Daily life/Sad/0011.mp4")].iloc[0]
    assert (row["split"], row["label"]) == ("test", "Sad")
    again = check_rows(from_ferv39k(tmp_path))
    assert again["split"].tolist() == sheet["split"].tolist()
    (setups / "test_All.csv").write_text("Action/Happy/0999 Happy\n")
    with pytest.raises(
        DatasetError, match=r"test_All\.csv:1: no video file for FERV39k clip 'Action/Happy/0999'"
    ):
        from_ferv39k(tmp_path)


def test_new_formats_dispatch_from_the_config(tmp_path):
    from avfer.config import validate_config

    for fmt in ("dfew", "ferv39k", "mafw"):
        cfg = validate_config({"dataset": {"format": fmt, "root": str(tmp_path / "none")}})["dataset"]
        with pytest.raises(DatasetError, match="does not exist"):
            build_sample_sheet(cfg)
