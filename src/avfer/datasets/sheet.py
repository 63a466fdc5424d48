"""The sample sheet: one row per clip, ``clip_id, path, split, label, group, fold, shard``.

Every later stage reads clips through this sheet. Clips are grouped into shards of
``shard_size`` clips per split (``train-000``, ``val-001``, ...), so a dataset of thousands of
clips becomes tens of jobs, not thousands. ``split`` is the dataset's own split; what each clip
is used for (train / dev / val / test, or a k-fold run) is :mod:`avfer.datasets.splits`' job.
``group`` (speaker / actor / movie) and ``fold`` (official folds) are '' when unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from avfer.datasets.adapters import (
    DatasetError,
    Row,
    dfew_fold_files,
    ferv39k_files,
    from_afew,
    from_cremad,
    from_dfew,
    from_ferv39k,
    from_mafw,
    from_manifest,
    from_ravdess,
    mafw_fold_files,
)
from avfer.io.atomic import atomic_path
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


def _index_files(cfg: Mapping[str, Any]) -> list[Path]:
    """The files an adapter reads its list of clips from (the manifest, the official fold files)."""
    fmt, root = cfg["format"], Path(cfg["root"])
    if fmt == "manifest":
        return [Path(cfg["manifest"])] if cfg["manifest"] else []
    lists = {"dfew": dfew_fold_files, "mafw": mafw_fold_files, "ferv39k": ferv39k_files}
    return lists[fmt](root) if fmt in lists else []


def dataset_sources(cfg: Mapping[str, Any], sheet: pd.DataFrame | None = None) -> list[str]:
    """What the sample sheet of the ``dataset`` section ``cfg`` is built from, cheap to stat: the
    adapter's index files, and the folders holding the clips of ``sheet`` (the sheet built last
    time, if any), their parents up to the root, the root (and AFEW's split folders). A folder's
    time changes when a file in it is added, removed or renamed, so these, the inputs of
    ``build_sample_sheet``, re-build the sheet when the dataset changes without walking its tree
    (one stat each; a clip file replaced in place re-runs its own shard: the media files are the
    inputs of the per-shard stages). Only existing paths (the adapter names a missing one)."""
    root = Path(cfg["root"])
    out = set(_index_files(cfg))
    if cfg["format"] != "manifest":
        out.add(root)
        if cfg["format"] == "afew":
            out.update(root / folder for folder in cfg["afew_splits"].values())
        for folder in {Path(p).parent for p in (sheet["path"] if sheet is not None else [])}:
            out.add(folder)
            out.update(parent for parent in folder.parents if root in parent.parents)
    return sorted(str(p) for p in out if p.exists())


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
