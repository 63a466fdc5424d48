"""Static (single image) expression datasets for pre-training, mapped to the canonical 7 labels.

Adapters (each fails naming the file on a missing image or an unknown label):

- ``fer2013``: the Kaggle csv ``emotion,pixels[,Usage]`` (48x48 grey; FER2013 order
  0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad 5=Surprise 6=Neutral); Usage Training → train,
  PublicTest → val, PrivateTest → test (no Usage column: all train).
- ``rafdb``: RAF-DB basic: ``<root>/EmoLabel/list_patition_label.txt`` (or the list directly in
  ``<root>``) with lines ``train_00001.jpg 5`` (1=Surprise 2=Fear 3=Disgust 4=Happiness 5=Sadness
  6=Anger 7=Neutral) and images ``<root>/Image/aligned/train_00001_aligned.jpg`` (the
  ``images`` key overrides the folder); ``train_``/``test_`` prefixes give the split.
- ``affectnet``: the AffectNet csv ``subDirectory_filePath,face_x,face_y,face_width,face_height,
  ...,expression`` (0=Neutral 1=Happy 2=Sad 3=Surprise 4=Fear 5=Disgust 6=Anger); rows with
  7=Contempt (no canonical class) and 8-10 (None, Uncertain, Non-face) are dropped, as in the
  usual 7-class protocol. Images under ``images`` (default: the csv's folder), cropped to the
  face box when ``crop`` is true. Use one entry per csv (``split: train`` for training.csv,
  ``split: val`` for validation.csv).
- ``folder``: ``<root>/<Emotion>/*.jpg`` (any spelling :func:`avfer.labels.canonical` knows),
  or ``<root>/<train|val|test>/<Emotion>/*``.

Images are decoded once (a thread pool) into one uint8 ``[N, S, S, C]`` array at the model's
size; a dataset without a validation split gives ``val_fraction`` of its training images
(stratified, seeded) to validation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avfer.datasets.adapters import DatasetError
from avfer.labels import EMOTIONS, LabelError, canonical
from avfer.models.xception import FER2013_ORDER

log = logging.getLogger(__name__)

STATIC_FORMATS = ("fer2013", "ferplus", "ckplus", "rafdb", "affectnet", "folder")
RAFDB_LABELS = {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happy", 5: "Sad", 6: "Angry", 7: "Neutral"}
AFFECTNET_LABELS = {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust", 6: "Angry"}
AFFECTNET_DROPPED = {7: "Contempt", 8: "None", 9: "Uncertain", 10: "Non-Face"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_SPLITS = ("train", "val", "test")


@dataclass
class StaticSet:
    """Decoded images ``[N, S, S, C]`` uint8 with canonical ``labels`` (index), ``splits``,
    ``sources`` (dataset name) and ``soft`` label distributions ``[N, 7]`` (the FER+ crowd's
    votes; one-hot for datasets with one label an image) per image."""

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    soft: np.ndarray

    def select(self, mask: np.ndarray) -> StaticSet:
        """The images where ``mask`` is true."""
        return StaticSet(
            self.images[mask], self.labels[mask], self.splits[mask], self.sources[mask], self.soft[mask]
        )

    def part(self, split: str) -> StaticSet:
        """The images of one split."""
        return self.select(self.splits == split)


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Label indices → one-hot distributions ``[N, 7]`` float32."""
    return np.eye(len(EMOTIONS), dtype=np.float32)[np.asarray(labels, np.int64)]


def read_fer2013(path: str | Path, size: int = 48, chans: int = 1) -> tuple[np.ndarray, pd.DataFrame]:
    """FER2013 csv (plain or ``.gz``) → (images ``[N, size, size, chans]``, rows ``label, split,
    row``); ``row`` is the 0-based data row of the file. Rows with an empty ``pixels`` field (174
    in the FER+ reconstruction of FER2013) are dropped and counted in the log."""
    from avfer.data.transforms import fit_images

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: FER2013 csv does not exist")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "pixels" in df.columns:
        df["row"] = np.arange(len(df))
        empty = df["pixels"].str.strip() == ""
        if empty.any():
            log.info("%s: dropping %d rows without pixels", path, int(empty.sum()))
            df = df[~empty].reset_index(drop=True)
    if not {"emotion", "pixels"} <= set(df.columns):
        raise DatasetError(f"{path}: FER2013 csv needs columns emotion, pixels (found {list(df.columns)})")
    codes = pd.to_numeric(df["emotion"], errors="coerce")
    bad = ~codes.isin(range(len(FER2013_ORDER)))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{path}:{df['row'].iloc[i] + 2}: unknown FER2013 emotion {df['emotion'].iloc[i]!r}"
            " (expected 0-6)"
        )
    lengths = df["pixels"].str.count(" ") + 1
    side = int(round(float(np.sqrt(lengths.iloc[0])))) if len(df) else 48
    wrong = lengths != side * side
    if wrong.any():
        i = int(np.flatnonzero(wrong.to_numpy())[0])
        raise DatasetError(
            f"{path}:{df['row'].iloc[i] + 2}: {lengths.iloc[i]} pixel values, expected {side * side}"
        )
    pixels = np.empty((len(df), side, side, 1), np.uint8)
    for i in range(0, len(df), 4096):  # parse in chunks: the whole set is ~80M numbers
        chunk = np.fromstring(" ".join(df["pixels"].iloc[i : i + 4096]), dtype=np.int64, sep=" ")
        pixels[i : i + 4096] = chunk.clip(0, 255).astype(np.uint8).reshape(-1, side, side, 1)
    usage = {"training": "train", "publictest": "val", "privatetest": "test"}
    if "Usage" in df.columns:
        unknown = sorted(set(df["Usage"].str.lower()) - set(usage))
        if unknown:
            raise DatasetError(f"{path}: unknown Usage value(s) {unknown}; expected {sorted(usage)}")
        splits = df["Usage"].str.lower().map(usage)
    else:
        splits = pd.Series(["train"] * len(df))
    rows = pd.DataFrame(
        {
            "label": [FER2013_ORDER[c] for c in codes.astype(int)],
            "split": splits.to_numpy(),
            "row": df["row"].to_numpy(),
        }
    )
    return fit_images(pixels, size, chans).numpy(), rows


def _check_files(paths: Sequence[Path], source: Path) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"{source}: {len(missing)} image file(s) listed do not exist, e.g. {missing[0]}")


def list_rafdb(root: str | Path, images: str | Path | None = None) -> pd.DataFrame:
    """RAF-DB basic → rows ``path, label, split`` (see the module docstring)."""
    root = Path(root)
    lists = [root / "EmoLabel" / "list_patition_label.txt", root / "list_patition_label.txt"]
    label_file = next((p for p in lists if p.is_file()), None)
    if label_file is None:
        raise DatasetError(f"{root}: RAF-DB label list EmoLabel/list_patition_label.txt not found")
    folder = Path(images) if images else root / "Image" / "aligned"
    rows = []
    for i, line in enumerate(label_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB_LABELS:
            raise DatasetError(f"{label_file}:{i}: expected '<name>.jpg <1-7>', got {line.strip()!r}")
        name = Path(parts[0])
        split = "test" if name.name.startswith("test") else "train"
        path = folder / f"{name.stem}_aligned{name.suffix}"
        if not path.is_file() and (folder / name).is_file():
            path = folder / name
        rows.append({"path": path, "label": RAFDB_LABELS[int(parts[1])], "split": split})
    _check_files([r["path"] for r in rows], label_file)
    return pd.DataFrame(rows)


def list_affectnet(
    csv_path: str | Path, images: str | Path | None = None, split: str = "train", crop: bool = True
) -> pd.DataFrame:
    """AffectNet csv → rows ``path, label, split[, box]`` (7 classes; see the module docstring)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: AffectNet csv does not exist")
    df = pd.read_csv(csv_path, dtype={"subDirectory_filePath": str})
    need = {"subDirectory_filePath", "expression"}
    if not need <= set(df.columns):
        raise DatasetError(f"{csv_path}: AffectNet csv needs columns {sorted(need)}")
    codes = pd.to_numeric(df["expression"], errors="coerce")
    known = codes.isin(list(AFFECTNET_LABELS) + list(AFFECTNET_DROPPED))
    if not known.all():
        i = int(np.flatnonzero(~known.to_numpy())[0])
        code = str(df["expression"].iloc[i])
        raise DatasetError(f"{csv_path}:{i + 2}: unknown AffectNet expression {code!r}")
    keep = codes.isin(list(AFFECTNET_LABELS)).to_numpy()
    log.info("%s: dropping %d rows (Contempt / None / Uncertain / Non-Face)", csv_path, int((~keep).sum()))
    df, codes = df[keep], codes[keep].astype(int)
    folder = Path(images) if images else csv_path.parent
    out = pd.DataFrame(
        {
            "path": [folder / p for p in df["subDirectory_filePath"]],
            "label": [AFFECTNET_LABELS[c] for c in codes],
            "split": split,
        }
    )
    box_cols = ["face_x", "face_y", "face_width", "face_height"]
    if crop and set(box_cols) <= set(df.columns):
        out["box"] = [tuple(int(v) for v in b) for b in df[box_cols].to_numpy()]
    _check_files(list(out["path"]), csv_path)
    return out


def list_image_folder(root: str | Path, split: str = "train") -> pd.DataFrame:
    """``<root>/<Emotion>/*`` or ``<root>/<split>/<Emotion>/*`` → rows ``path, label, split``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder does not exist")
    split_dirs = [root / s for s in _SPLITS if (root / s).is_dir()]
    tops = [(d, d.name) for d in split_dirs] if split_dirs else [(root, split)]
    rows = []
    for top, top_split in tops:
        for sub in sorted(p for p in top.iterdir() if p.is_dir()):
            try:
                label = canonical(sub.name, source=str(sub))
            except LabelError as exc:
                raise DatasetError(str(exc)) from None
            for p in sorted(sub.iterdir()):
                if p.suffix.lower() in IMAGE_EXTENSIONS:
                    rows.append({"path": p, "label": label, "split": top_split})
    if not rows:
        raise DatasetError(f"{root}: no images in <Emotion>/ sub-folders")
    return pd.DataFrame(rows)


def _decode(path: Path, size: int, chans: int, box: tuple[int, int, int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if chans == 1 else "RGB")
            if box is not None:
                x, y, w, h = box
                im = im.crop((x, y, x + w, y + h))
            im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from None
    return arr.reshape(size, size, chans)


def decode_images(rows: pd.DataFrame, size: int, chans: int, workers: int = 4) -> np.ndarray:
    """Decode ``rows.path`` (cropped to ``rows.box`` if present) into ``[N, size, size, chans]``."""
    boxes = list(rows["box"]) if "box" in rows else [None] * len(rows)
    out = np.empty((len(rows), size, size, chans), np.uint8)

    def one(i: int) -> None:
        out[i] = _decode(Path(rows["path"].iloc[i]), size, chans, boxes[i])

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, range(len(rows))))
    return out


def _carve_val(splits: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator) -> None:
    """Move ``fraction`` of each label's train items to val, in place."""
    for lab in np.unique(labels):
        idx = np.flatnonzero((splits == "train") & (labels == lab))
        n = int(round(len(idx) * fraction))
        if n:
            splits[rng.choice(idx, n, replace=False)] = "val"


def load_static(
    entries: Sequence[Mapping[str, Any]],
    *,
    size: int,
    chans: int,
    val_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 4,
) -> StaticSet:
    """Load and combine the datasets of ``entries`` (the ``pretrain.datasets`` config list)."""
    parts: list[StaticSet] = []
    rng = np.random.default_rng(seed)
    for k, entry in enumerate(entries):
        fmt, path = entry["format"], entry["path"]
        name = entry.get("name") or f"{fmt}{k}"
        split = entry.get("split") or "auto"
        soft = None
        if fmt == "fer2013":
            images, rows = read_fer2013(path, size, chans)
        elif fmt == "ferplus":
            from avfer.data.ferplus import read_ferplus

            if not entry.get("labels"):
                raise DatasetError(f"pretrain dataset {name}: ferplus needs labels (the fer2013new.csv)")
            images, rows, soft = read_ferplus(path, entry["labels"], size, chans)
        elif fmt == "ckplus":
            from avfer.data.ferplus import read_ckplus

            shares = entry.get("subject_split") or (0.0, 0.0, 1.0)
            images, rows = read_ckplus(path, size, chans, shares, entry.get("split_seed", 0))
        elif fmt in ("rafdb", "affectnet", "folder"):
            if fmt == "rafdb":
                rows = list_rafdb(path, entry.get("images"))
            elif fmt == "affectnet":
                default = "train" if split == "auto" else split
                rows = list_affectnet(path, entry.get("images"), default, entry.get("crop", True))
            else:
                rows = list_image_folder(path, "train" if split == "auto" else split)
            images = None
        else:
            raise DatasetError(f"pretrain dataset {name}: format {fmt!r} not one of {STATIC_FORMATS}")
        labels = np.array([EMOTIONS.index(x) for x in rows["label"]], np.int64)
        soft = one_hot(labels) if soft is None or not entry.get("soft_labels", True) else soft
        splits = np.array(rows["split"] if split == "auto" else [split] * len(rows), dtype=object)
        keep = np.arange(len(rows))
        if entry.get("max_images") and len(rows) > entry["max_images"]:
            keep = np.sort(rng.choice(len(rows), int(entry["max_images"]), replace=False))
        if images is None:
            images = decode_images(rows.iloc[keep].reset_index(drop=True), size, chans, workers)
        else:
            images = images[keep]
        labels, splits, soft = labels[keep], splits[keep], soft[keep]
        if entry.get("repeat", 1) > 1:  # oversample a small set's training images
            idx = np.concatenate(
                [np.flatnonzero(splits != "train")]
                + [np.flatnonzero(splits == "train")] * int(entry["repeat"])
            )
            images, labels, splits, soft = images[idx], labels[idx], splits[idx], soft[idx]
        if not (splits == "val").any() and val_fraction > 0:
            _carve_val(splits, labels, val_fraction, rng)
        counts = {s: int((splits == s).sum()) for s in _SPLITS}
        log.info("pretrain dataset %s (%s, %s): %d images %s", name, fmt, path, len(labels), counts)
        parts.append(StaticSet(images, labels, splits, np.array([name] * len(labels), dtype=object), soft))
    if not parts:
        raise DatasetError("pretrain.datasets is empty: nothing to pre-train on")
    return StaticSet(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.splits for p in parts]).astype(str),
        np.concatenate([p.sources for p in parts]).astype(str),
        np.concatenate([p.soft for p in parts]),
    )
