"""FER+ (FER2013 images with 10 crowd votes each) and CK+48, mapped to the canonical 7 labels.

- ``ferplus``: images from the FER2013 csv (plain or ``.gz``, :func:`avfer.data.static.read_fer2013`),
  votes from Microsoft's ``fer2013new.csv`` (same row order; columns ``Usage, Image name, neutral,
  happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF``). Per image: the
  vote distribution over the 7 canonical classes and the majority label (the most-voted of the
  ten columns; a tie goes to the first in that column order). Images whose majority is
  ``contempt``, ``unknown`` or ``NF`` (not a face), and rows without pixels, are dropped and
  counted in the log; the contempt votes of kept images are dropped from their distribution
  (contempt is not one of the 7 classes). Splits: Training → train, PublicTest → val (model
  selection), PrivateTest → test (reported once).
- ``ckplus``: the CK+48 layout ``<root>/<emotion>/S010_004_00000017.png`` (a folder, or a
  ``.tar``/``.tar.gz`` of it): label from the folder name (``contempt`` dropped and counted),
  ``group`` = the subject (``S010``). A subject split (train / val / test shares, seeded) keeps
  every image of a subject in one split, for cross-dataset evaluation on unseen people.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from avfer.datasets.adapters import DatasetError
from avfer.labels import EMOTIONS, LabelError, canonical

log = logging.getLogger(__name__)

FERPLUS_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"
)  # fmt: skip
FERPLUS_TO_CANONICAL = {
    "anger": "Angry",
    "disgust": "Disgust",
    "fear": "Fear",
    "happiness": "Happy",
    "neutral": "Neutral",
    "sadness": "Sad",
    "surprise": "Surprise",
}
FERPLUS_DROPPED = ("contempt", "unknown", "NF")
_SUBJECT = re.compile(r"^(S\d+)_")


def read_ferplus_votes(path: str | Path) -> pd.DataFrame:
    """``fer2013new.csv`` → its rows (``Usage`` and the ten vote columns), checked."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: FER+ label csv (fer2013new.csv) does not exist")
    df = pd.read_csv(path, keep_default_na=False, dtype={"Image name": str})
    missing = [c for c in ("Usage", *FERPLUS_COLUMNS) if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: FER+ label csv lacks column(s) {missing}")
    votes = df[list(FERPLUS_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad = votes.isna().any(axis=1) | (votes < 0).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{path}:{i + 2}: vote counts must be non-negative numbers")
    df[list(FERPLUS_COLUMNS)] = votes
    return df


def read_ferplus(
    fer_csv: str | Path, labels_csv: str | Path, size: int = 48, chans: int = 1
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """FER2013 pixels + FER+ votes → (images ``[N, size, size, chans]``, rows ``label, split,
    row, fer2013_label``, vote distributions ``[N, 7]`` float32 in canonical order)."""
    from avfer.data.static import read_fer2013

    images, rows = read_fer2013(fer_csv, size, chans)
    votes = read_ferplus_votes(labels_csv)
    if rows["row"].max() >= len(votes):
        raise DatasetError(
            f"{labels_csv}: {len(votes)} rows, but {fer_csv} has row {rows['row'].max() + 1};"
            " not the same order"
        )
    v = votes.iloc[rows["row"].to_numpy()].reset_index(drop=True)
    usage = {"training": "train", "publictest": "val", "privatetest": "test"}
    split_votes = v["Usage"].str.lower().map(usage)
    if (split_votes.to_numpy() != rows["split"].to_numpy()).any():
        i = int(np.flatnonzero(split_votes.to_numpy() != rows["split"].to_numpy())[0])
        raise DatasetError(
            f"{labels_csv}:{rows['row'].iloc[i] + 2}: Usage {v['Usage'].iloc[i]!r} differs from {fer_csv}'s"
        )
    counts = v[list(FERPLUS_COLUMNS)].to_numpy(np.float64)
    majority = np.array(FERPLUS_COLUMNS)[counts.argmax(1)]
    dropped = np.isin(majority, FERPLUS_DROPPED)
    for name in FERPLUS_DROPPED:
        n = int((majority == name).sum())
        log.info("%s: dropping %d images whose majority vote is %s", labels_csv, n, name)
    keep = ~dropped
    column_of = {label: FERPLUS_COLUMNS.index(col) for col, label in FERPLUS_TO_CANONICAL.items()}
    dist = counts[keep][:, [column_of[e] for e in EMOTIONS]]
    dist = (dist / dist.sum(1, keepdims=True)).astype(np.float32)
    out = pd.DataFrame(
        {
            "label": [FERPLUS_TO_CANONICAL[m] for m in majority[keep]],
            "split": rows["split"].to_numpy()[keep],
            "row": rows["row"].to_numpy()[keep],
            "fer2013_label": rows["label"].to_numpy()[keep],
        }
    )
    per_split = out["split"].value_counts().to_dict()
    log.info("FER+: %d images kept %s", len(out), per_split)
    return images[keep], out, dist


def _ckplus_members(path: Path) -> list[tuple[str, bytes | Path]]:
    """(relative POSIX name, bytes or file path) of every PNG/JPG of a CK+48 folder or tar."""
    exts = (".png", ".jpg", ".jpeg")
    if path.is_dir():
        return [
            (p.relative_to(path).as_posix(), p) for p in sorted(path.rglob("*")) if p.suffix.lower() in exts
        ]
    if path.is_file() and tarfile.is_tarfile(path):
        out = []
        with tarfile.open(path) as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                if (
                    m.isfile()
                    and Path(m.name).suffix.lower() in exts
                    and not Path(m.name).name.startswith(".")
                ):
                    out.append((m.name, tar.extractfile(m).read()))
        return out
    raise DatasetError(f"{path}: CK+48 must be a folder or a .tar(.gz) of <emotion>/<image> files")


def subject_splits(
    subjects: Sequence[str], shares: Sequence[float] = (0.0, 0.0, 1.0), seed: int = 0
) -> dict[str, str]:
    """Subject → ``train``/``val``/``test``: the sorted subjects shuffled with ``seed`` and cut by
    ``shares`` (train, val, test; normalised), so no person is in two splits."""
    names = sorted(set(subjects))
    w = np.asarray(shares, np.float64)
    if w.shape != (3,) or (w < 0).any() or w.sum() <= 0:
        raise DatasetError(f"ckplus subject_split {list(shares)}: need three non-negative shares")
    perm = np.random.default_rng(seed).permutation(len(names))
    cuts = np.round(np.cumsum(w / w.sum()) * len(names)).astype(int)
    split = np.array(["train"] * len(names), dtype=object)
    split[perm[cuts[0] : cuts[1]]] = "val"
    split[perm[cuts[1] :]] = "test"
    return {names[i]: str(split[i]) for i in range(len(names))}


def read_ckplus(
    path: str | Path, size: int = 48, chans: int = 1, shares: Sequence[float] = (0.0, 0.0, 1.0), seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """CK+48 → (images ``[N, size, size, chans]``, rows ``label, split, group, name``)."""
    from PIL import Image, UnidentifiedImageError

    from avfer.data.transforms import fit_images

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: CK+48 folder or archive does not exist")
    rows, images, dropped = [], [], 0
    for name, data in _ckplus_members(path):
        parts = Path(name).parts
        if len(parts) < 2:
            continue
        folder, stem = parts[-2], Path(name).stem
        if folder.lower() == "contempt":
            dropped += 1
            continue
        try:
            label = canonical(folder, source=f"{path}/{name}")
        except LabelError as exc:
            raise DatasetError(str(exc)) from None
        m = _SUBJECT.match(stem)
        if not m:
            raise DatasetError(f"{path}/{name}: expected a CK+ name like S010_004_00000017")
        try:
            with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
                arr = np.asarray(im.convert("L" if chans == 1 else "RGB"), np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"{path}/{name}: cannot read image ({exc})") from None
        images.append(fit_images(arr.reshape(1, *arr.shape[:2], -1), size, chans).numpy()[0])
        rows.append({"label": label, "group": m.group(1), "name": name})
    if not rows:
        raise DatasetError(f"{path}: no CK+48 images in <emotion>/ folders")
    df = pd.DataFrame(rows)
    splits = subject_splits(df["group"], shares, seed)
    df["split"] = df["group"].map(splits)
    log.info(
        "CK+48 %s: %d images of %d subjects (%d contempt dropped), %s",
        path, len(df), df["group"].nunique(), dropped, df["split"].value_counts().to_dict(),
    )  # fmt: skip
    return np.stack(images), df
