"""The evaluation protocol's split assignment: a grouped, stratified dev split carved from train,
subject-independent k folds (or official ones), the opt-out, tiny datasets, the CSV round trip."""

import pandas as pd
import pytest

from avfer.datasets import DatasetError
from avfer.datasets.splits import make_splits, read_splits, selection_split, write_splits
from avfer.labels import EMOTIONS


def _sheet(per_class=6, clips_per_group=2, splits=("train", "val", "test")):
    rows = []
    for split in splits:
        for e in EMOTIONS:
            for k in range(per_class):
                cid = f"{split}_{e}_{k}"
                rows.append(
                    {"clip_id": cid, "split": split, "label": e, "group": f"{split}{e}{k // clips_per_group}"}
                )
    return pd.DataFrame(rows)


def test_dev_is_grouped_stratified_and_from_train_only():
    sheet = _sheet(per_class=14)
    splits = make_splits(sheet, dev_fraction=0.15, seed=0)
    dev, train = splits[splits["split"] == "dev"], splits[splits["split"] == "train"]
    assert 0.1 < len(dev) / (len(dev) + len(train)) < 0.2
    assert set(dev["clip_id"]) <= set(sheet.loc[sheet["split"] == "train", "clip_id"])
    assert not set(dev["group"]) & set(train["group"])
    assert set(dev["label"]) == set(EMOTIONS)  # stratified: every class in dev
    assert (splits["split"] == "val").sum() == (sheet["split"] == "val").sum()
    assert splits.equals(make_splits(sheet, dev_fraction=0.15, seed=0))  # deterministic
    assert selection_split(read_dict(splits)) == "dev"


def read_dict(df):
    return {c: (s, lab) for c, s, lab in zip(df["clip_id"], df["split"], df["label"], strict=True)}


def test_opt_out_and_tiny_train_split():
    sheet = _sheet(per_class=2, clips_per_group=1)
    off = make_splits(sheet, dev_fraction=0, seed=0)
    assert "dev" not in set(off["split"]) and selection_split(read_dict(off)) == "val"
    tiny = make_splits(sheet, dev_fraction=0.15, seed=0)  # 2 clips a class: grouped, not stratified
    n_dev = (tiny["split"] == "dev").sum()
    assert 1 <= n_dev <= 4


@pytest.mark.parametrize("fold_val", ["carved", "next_fold"])
def test_kfold_runs_test_every_clip_once_and_keep_groups_apart(fold_val):
    sheet = _sheet(per_class=6)
    tested = []
    for fold in range(3):
        s = make_splits(sheet, dev_fraction=0.15, seed=0, folds=3, fold=fold, fold_val=fold_val)
        by = {name: set(s.loc[s["split"] == name, "group"]) for name in ("train", "dev", "val", "test")}
        assert all(not by[a] & by[b] for a in by for b in by if a < b)
        tested += s.loc[s["split"] == "test", "clip_id"].tolist()
    assert sorted(tested) == sorted(sheet["clip_id"])
    with pytest.raises(DatasetError, match="fold 3 is not in 0..2"):
        make_splits(sheet, dev_fraction=0.15, seed=0, folds=3, fold=3)


def test_kfold_default_trains_on_every_other_fold():
    """The literature's protocol: in run k, fold k tests and all other folds train; val and dev are
    carved from those (whole groups), so train holds far more than the two folds of next_fold."""
    sheet = _sheet(per_class=20)  # 420 clips, 210 groups
    folds = 5
    carved = make_splits(sheet, dev_fraction=0.15, seed=0, folds=folds, fold=0)
    nxt = make_splits(sheet, dev_fraction=0.15, seed=0, folds=folds, fold=0, fold_val="next_fold")
    test = set(carved.loc[carved["split"] == "test", "clip_id"])
    assert test == set(nxt.loc[nxt["split"] == "test", "clip_id"])  # fold k tests either way
    share = {name: (s["split"] == "train").mean() for name, s in (("carved", carved), ("next", nxt))}
    # carved: 80 % x 0.9 (val) x 0.85 (dev) = 61 % of the clips train; next fold: 60 % x 0.85 = 51 %
    assert 0.57 < share["carved"] < 0.65 and 0.47 < share["next"] < 0.55
    val = carved[carved["split"] == "val"]
    assert 0.06 < len(val) / len(carved) < 0.1 and set(val["label"]) == set(EMOTIONS)
    by = {n: set(carved.loc[carved["split"] == n, "group"]) for n in ("train", "dev", "val", "test")}
    assert all(not by[a] & by[b] for a in by for b in by if a < b)  # groups never straddle splits
    with pytest.raises(DatasetError, match="dataset.fold_val 'first' is not one of carved, next_fold"):
        make_splits(sheet, dev_fraction=0.15, seed=0, folds=folds, fold=0, fold_val="first")


def test_cv_summary_says_which_protocol(tmp_path):
    import json

    from avfer.config import validate_config
    from avfer.fusion.summary import cv_protocol, summarize_cv

    dataset = validate_config({"dataset": {"folds": 5}})["dataset"]
    assert dataset["fold_val"] == "carved"
    fusions = []
    for k in range(2):
        fusions.append(tmp_path / f"f{k}.json")
        fusions[-1].write_text(json.dumps({"method": "weight_search", "test": {"accuracy": 0.5 + k / 10}}))
    out = summarize_cv(fusions, {}, tmp_path / "cv.json", cv_protocol(dataset))
    saved = json.loads((tmp_path / "cv.json").read_text())
    assert saved["protocol"] == out["protocol"] and saved["protocol"]["val"] == "carved"
    assert saved["protocol"]["train"] == "the other folds" and saved["protocol"]["test"] == "fold k"
    old = cv_protocol({**dataset, "fold_val": "next_fold", "dev_fraction": 0})
    assert old["val_from"] == "fold k+1 mod K" and old["dev"].startswith("none")


def test_official_folds_are_used(tmp_path):
    sheet = _sheet(per_class=6)
    sheet["fold"] = [str(i % 4 + 1) for i in range(len(sheet))]
    s = make_splits(sheet, dev_fraction=0, seed=0, folds=4, fold=0)
    test_ids = set(s.loc[s["split"] == "test", "clip_id"])
    assert test_ids == set(sheet.loc[sheet["fold"] == "1", "clip_id"])
    with pytest.raises(DatasetError, match="fold column has 4"):
        make_splits(sheet, dev_fraction=0, seed=0, folds=3, fold=0)
    write_splits(s, tmp_path / "splits.csv")
    assert read_splits(tmp_path / "splits.csv") == read_dict(s)
    (tmp_path / "bad.csv").write_text("clip_id,split,label\na,holdout,Happy\n")
    with pytest.raises(DatasetError, match="unknown split"):
        read_splits(tmp_path / "bad.csv")
