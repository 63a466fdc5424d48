"""The evaluation protocol: which clips train, select, fuse and test each model.

The sample sheet keeps the dataset's own split (``train``/``val``/``test``: the caches of the
per-clip stages are built from it and never depend on the protocol). A *split assignment*
(``splits.csv``: ``clip_id, split, label, group``) then says what every clip is used for:

* ``train``: fits the models;
* ``dev``: carved from ``train`` (stratified by label, grouped by ``group`` when the sheet has
  groups: speaker / actor / movie), selects every model's best epoch (early stopping);
* ``val``: used by late fusion only (its weights and method), never by a single model;
* ``test``: scored, never used for a choice.

``dataset.dev_fraction: 0`` opts out: models then select on ``val`` too (today's EmotiW habit,
optimistic for every val number). ``dataset.folds: K`` replaces the dataset's splits by K
subject-independent folds (or the dataset's official ``fold`` column): in run *k* fold *k* is
``test`` and the other K-1 folds train, as the published K-fold results of DFEW / MAFW do;
``val`` (``dataset.fold_val_fraction``) and then ``dev`` are carved from them by group
(:data:`FOLD_VAL` ``carved``, the default). ``dataset.fold_val: next_fold`` keeps the older
protocol: fold *k+1 mod K* is ``val`` and K-2 folds train.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from avfer.datasets.adapters import DatasetError
from avfer.io.atomic import atomic_path

log = logging.getLogger(__name__)

PROTOCOL_SPLITS = ("train", "dev", "val", "test")
SPLIT_COLUMNS = ("clip_id", "split", "label", "group")
# where a k-fold run's val comes from: carved from the K-1 training folds, or the next fold
FOLD_VAL = ("carved", "next_fold")

# clip id -> (split, label): what a reader of the caches uses instead of the cache attributes
Assignment = Mapping[str, tuple[str, str]]


def _groups(df: pd.DataFrame) -> np.ndarray:
    """Group of each clip: its ``group`` value, or the clip itself when it has none."""
    group = df["group"] if "group" in df.columns else pd.Series("", index=df.index)
    return np.where(group.astype(str) != "", "g:" + group.astype(str), "c:" + df["clip_id"].astype(str))


def _stratified_group_folds(df: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) of each row: stratified by label, whole groups per fold. Where no class
    has k clips (tiny datasets) stratification is impossible: whole groups, shuffled, then."""
    y = df["label"].to_numpy(dtype=str)
    groups = _groups(df)
    k = min(k, len(np.unique(groups)))
    if k < 2:
        return np.zeros(len(df), dtype=int)
    folds = np.empty(len(df), dtype=int)
    if pd.Series(y).value_counts().max() >= k:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        log.warning("fewer than %d clips in every class: folds are grouped but not stratified", k)
        cv = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes with fewer members than folds
        for i, (_, idx) in enumerate(cv.split(np.zeros(len(df)), y, groups)):
            folds[idx] = i
    return folds


def carve_dev(
    df: pd.DataFrame, fraction: float, seed: int, to: str = "dev", key: str = "dataset.dev_fraction"
) -> pd.Series:
    """``df['split']`` with about ``fraction`` of the labelled train clips moved to ``to`` (whole
    groups, stratified by label); ``key`` is the setting named when that is impossible."""
    split = df["split"].copy()
    if fraction <= 0:
        return split
    train = df[(df["split"] == "train") & (df["label"] != "")]
    k = max(2, round(1.0 / fraction))
    folds = _stratified_group_folds(train, k, seed)
    if len(np.unique(folds)) < 2:
        hint = "; set dataset.dev_fraction: 0" if to == "dev" else ""
        raise DatasetError(
            f"{key} {fraction}: the train split has too few clips or groups "
            f"({len(train)} clips) to carve a {to} split{hint}"
        )
    split.loc[train.index[folds == 0]] = to
    return split


def assign_folds(sheet: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """Fold of every labelled clip: the sheet's official ``fold`` column when it has one, else
    stratified group folds (``group``: subject-independent); -1 for unlabelled clips."""
    labelled = (sheet["label"] != "").to_numpy()
    out = np.full(len(sheet), -1, dtype=int)
    official = sheet["fold"].astype(str) if "fold" in sheet.columns else None
    if official is not None and (official[labelled] != "").all():
        names = sorted(official[labelled].unique(), key=lambda s: (len(s), s))
        if len(names) != k:
            raise DatasetError(f"dataset.folds is {k} but the sheet's fold column has {len(names)}: {names}")
        out[labelled] = [names.index(v) for v in official[labelled]]
        return out
    out[labelled] = _stratified_group_folds(sheet[labelled], k, seed)
    if len(np.unique(out[labelled])) < k:
        raise DatasetError(f"dataset.folds {k}: too few labelled clips or groups for {k} folds")
    return out


def make_splits(
    sheet: pd.DataFrame,
    *,
    dev_fraction: float,
    seed: int,
    folds: int = 0,
    fold: int | None = None,
    fold_val: str = "carved",
    fold_val_fraction: float = 0.1,
) -> pd.DataFrame:
    """The split assignment (:data:`SPLIT_COLUMNS`) of the sample sheet: the dataset's own splits,
    or run ``fold`` of ``folds`` (unlabelled clips are then left out; ``val`` from ``fold_val``,
    :data:`FOLD_VAL`), with ``dev`` carved."""
    df = sheet.reset_index(drop=True).copy()
    if "group" not in df.columns:
        df["group"] = ""
    if folds:
        if fold is None or not 0 <= fold < folds:
            raise DatasetError(f"fold {fold} is not in 0..{folds - 1}")
        if fold_val not in FOLD_VAL:
            raise DatasetError(f"dataset.fold_val {fold_val!r} is not one of {', '.join(FOLD_VAL)}")
        which = assign_folds(df, folds, seed)
        val = which == (fold + 1) % folds if fold_val == "next_fold" else np.zeros(len(df), bool)
        df["split"] = np.select([which == fold, val, which >= 0], ["test", "val", "train"], "unused")
        df = df[df["split"] != "unused"].reset_index(drop=True)
        if fold_val == "carved":
            df["split"] = carve_dev(df, fold_val_fraction, seed, "val", "dataset.fold_val_fraction")
    df["split"] = carve_dev(df, dev_fraction, seed)
    for split in ("train", "val"):
        if not (df["split"] == split).any():
            raise DatasetError(f"the split assignment has no {split!r} clips")
    return df.loc[:, list(SPLIT_COLUMNS)]


def write_splits(df: pd.DataFrame, path: str | Path) -> None:
    """Atomically write a split assignment as CSV."""
    with atomic_path(path) as tmp:
        df.loc[:, list(SPLIT_COLUMNS)].to_csv(tmp, index=False)


def read_splits(path: str | Path) -> dict[str, tuple[str, str]]:
    """Read ``splits.csv`` → :data:`Assignment` (clip id → (split, label))."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"clip_id", "split", "label"} - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: split assignment lacks column(s) {sorted(missing)}")
    bad = set(df["split"]) - set(PROTOCOL_SPLITS)
    if bad:
        raise DatasetError(f"{path}: unknown split(s) {sorted(bad)}")
    return {c: (s, lab) for c, s, lab in zip(df["clip_id"], df["split"], df["label"], strict=True)}


def read_groups(path: str | Path) -> dict[str, str]:
    """Read ``splits.csv`` → clip id → group (speaker / actor / movie; '' when unknown)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "clip_id" not in df.columns:
        raise DatasetError(f"{path}: split assignment lacks column clip_id")
    groups = df["group"] if "group" in df.columns else pd.Series("", index=df.index)
    return dict(zip(df["clip_id"], groups, strict=True))


def selection_split(splits: Mapping[str, Any] | Any) -> str:
    """The split that selects a model's epoch: ``dev`` when the assignment has one, else ``val``."""
    values = splits.values() if isinstance(splits, Mapping) else splits
    present = {v[0] if isinstance(v, tuple) else v for v in values}
    return "dev" if "dev" in present else "val"


def split_counts(df: pd.DataFrame) -> dict[str, int]:
    """Clips per split, in protocol order (for logs)."""
    counts = df["split"].value_counts()
    return {s: int(counts[s]) for s in PROTOCOL_SPLITS if s in counts}
