"""The sample sheet: one row per clip, ``clip_id, path, split, label, group, fold, shard``.

Every later stage reads clips through this sheet. Clips are grouped into shards of
``shard_size`` clips per split (``train-000``, ``val-001``, ...), so a dataset of thousands of
clips becomes tens of jobs, not thousands. ``split`` is the dataset's own split; what each clip
is used for (train / dev / val / test, or a k-fold run) is :mod:`avfer.datasets.splits`' job.
``group`` (speaker / actor / movie) and ``fold`` (official folds) are '' when unknown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from avfer.datasets.adapters import (
    DatasetError,
    Row,
    from_afew,
    from_cremad,
    from_dfew,
    from_ferv39k,
    from_mafw,
    from_manifest,
    from_ravdess,
)
from avfer.io.atomic import atomic_path
from avfer.io.hdf5 import config_hash
from avfer.labels import EMOTIONS

SPLITS = ("train", "val", "test")
FORMATS = ("afew", "manifest", "ravdess", "cremad", "dfew", "ferv39k", "mafw")
SHEET_COLUMNS = ("clip_id", "path", "split", "label", "group", "fold", "shard")
_OPTIONAL = ("group", "fold")


def _rows_for(cfg: Mapping[str, Any]) -> list[Row]:
    fmt = cfg["format"]
    if fmt == "afew":
        return from_afew(cfg["root"], cfg["afew_splits"])
    if fmt == "manifest":
        return from_manifest(cfg["manifest"])
    if fmt == "ravdess":
        return from_ravdess(
            cfg["root"],
            val_actors=cfg["val_actors"] or (21, 22),
            test_actors=cfg["test_actors"] or (23, 24),
            calm_as=cfg.get("calm_as"),
        )
    if fmt == "cremad":
        return from_cremad(
            cfg["root"],
            val_actors=cfg["val_actors"] or range(1082, 1087),
            test_actors=cfg["test_actors"] or range(1087, 1092),
        )
    if fmt == "dfew":
        return from_dfew(cfg["root"])
    if fmt == "mafw":
        return from_mafw(cfg["root"])
    if fmt == "ferv39k":
        return from_ferv39k(cfg["root"])
    raise DatasetError(f"dataset.format {fmt!r} is not one of {', '.join(FORMATS)}")


def check_rows(rows: list[Row]) -> pd.DataFrame:
    """Validate adapter rows (files exist, ids unique, splits and labels known) → DataFrame."""
    if not rows:
        raise DatasetError("the dataset has no video clips (check dataset.root / dataset.format)")
    df = pd.DataFrame(rows)
    for col in _OPTIONAL:
        df[col] = df[col].fillna("").astype(str) if col in df.columns else ""
    for rec in df.itertuples():
        if not Path(rec.path).is_file():
            raise DatasetError(f"{rec.path}: video file listed for clip {rec.clip_id} does not exist")
        if rec.split not in SPLITS:
            raise DatasetError(f"{rec.path}: split {rec.split!r} is not one of {SPLITS}")
        if rec.label and rec.label not in EMOTIONS:
            raise DatasetError(f"{rec.path}: label {rec.label!r} is not one of {EMOTIONS}")
        if rec.split != "test" and not rec.label:
            raise DatasetError(f"{rec.path}: clip in the {rec.split} split has no label")
    dup = df["clip_id"][df["clip_id"].duplicated()]
    if len(dup):
        first = dup.iloc[0]
        paths = df.loc[df["clip_id"] == first, "path"].tolist()
        raise DatasetError(f"clip id {first!r} is used by more than one file: {paths}")
    for split in ("train", "val"):
        if not (df["split"] == split).any():
            raise DatasetError(f"the dataset has no clips in the {split!r} split")
    return df


def assign_shards(df: pd.DataFrame, shard_size: int) -> pd.DataFrame:
    """Sort clips by split then id and add ``shard`` = ``<split>-<nnn>``."""
    order = {s: i for i, s in enumerate(SPLITS)}
    df = df.sort_values(["split", "clip_id"], key=lambda c: c.map(order) if c.name == "split" else c)
    df = df.reset_index(drop=True)
    rank = df.groupby("split").cumcount()
    df["shard"] = [f"{s}-{r // shard_size:03d}" for s, r in zip(df["split"], rank, strict=True)]
    return df


def build_sample_sheet(cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Build the validated, sharded sample sheet from the ``dataset`` config section."""
    return assign_shards(check_rows(_rows_for(cfg)), int(cfg["shard_size"]))


def dataset_fingerprint(cfg: Mapping[str, Any]) -> str:
    """A hash of the names, sizes and times of the files under ``cfg['root']`` (the sample sheet
    is rebuilt when files are added, removed or replaced); '' when the root does not exist."""
    root = Path(cfg["root"])
    if not root.is_dir():
        return ""
    entries = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            entries.append((os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns))
    return config_hash(sorted(entries))


def write_sample_sheet(df: pd.DataFrame, path: str | Path) -> None:
    """Atomically write the sheet as CSV."""
    with atomic_path(path) as tmp:
        df.loc[:, list(SHEET_COLUMNS)].to_csv(tmp, index=False)


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read a sample sheet written by :func:`write_sample_sheet` (labels '' when unlabelled)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(SHEET_COLUMNS) - set(_OPTIONAL) - set(df.columns)
    if missing:
        raise DatasetError(f"{path}: sample sheet lacks column(s) {sorted(missing)}")
    for col in _OPTIONAL:
        if col not in df.columns:
            df[col] = ""
    return df


def shard_clips(sheet: pd.DataFrame, shard: str) -> pd.DataFrame:
    """The rows of one shard, in sheet order."""
    rows = sheet[sheet["shard"] == shard]
    if rows.empty:
        raise DatasetError(f"shard {shard!r} is not in the sample sheet")
    return rows.reset_index(drop=True)
