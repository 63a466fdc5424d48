"""Adapters from the on-disk conventions of public video emotion datasets to sample rows."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from avfer.errors import AvferError
from avfer.labels import LabelError, canonical

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".flv", ".webm", ".mpg", ".mpeg", ".m4v")
_CLIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Row = dict[str, str]


class DatasetError(AvferError, ValueError):
    """A dataset on disk that does not match its declared layout."""


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _row(path: Path, split: str, label: str, clip_id: str | None = None) -> Row:
    cid = clip_id or path.stem
    if not _CLIP_ID.match(cid):
        raise DatasetError(f"{path}: clip id {cid!r} has characters other than letters, digits, _.-")
    return {"clip_id": cid, "path": str(path), "split": split, "label": label}


def from_afew(root: str | Path, splits: Mapping[str, str]) -> list[Row]:
    """AFEW/EmotiW tree: ``<root>/<split folder>/<Emotion>/<id>.avi``.

    ``splits`` maps our split name (train/val/test) to its folder. A folder without emotion
    sub-folders (the EmotiW test set) gives unlabelled clips.
    """
    root = Path(root)
    rows: list[Row] = []
    for split, folder_name in splits.items():
        folder = root / folder_name
        if not folder.is_dir():
            raise DatasetError(f"{folder}: AFEW split folder for {split!r} does not exist")
        subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
        for sub in subdirs:
            try:
                label = canonical(sub.name, source=str(sub))
            except LabelError as exc:
                raise DatasetError(str(exc)) from None
            rows += [_row(p, split, label) for p in _videos(sub)]
        rows += [_row(p, split, "") for p in _videos(folder)]
    return rows


def from_manifest(csv_path: str | Path) -> list[Row]:
    """CSV manifest with columns ``path, split`` and optional ``label``, ``clip_id``.

    Relative paths are taken relative to the manifest's folder.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: manifest does not exist")
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = {"path", "split"} - set(df.columns)
    if missing:
        raise DatasetError(f"{csv_path}: manifest lacks column(s) {sorted(missing)}")
    rows: list[Row] = []
    for i, rec in enumerate(df.to_dict("records"), start=2):
        path = Path(rec["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        label = rec.get("label", "")
        if label:
            try:
                label = canonical(label, source=f"{csv_path}:{i}")
            except LabelError as exc:
                raise DatasetError(str(exc)) from None
        rows.append(_row(path, rec["split"], label, rec.get("clip_id") or None))
    return rows


# RAVDESS: modality-channel-emotion-intensity-statement-repetition-actor, e.g. 01-01-06-01-02-01-12.mp4
_RAVDESS_EMOTION = {
    "01": "Neutral", "02": "Calm", "03": "Happy", "04": "Sad",
    "05": "Angry", "06": "Fear", "07": "Disgust", "08": "Surprise",
}  # fmt: skip
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def _actor_split(actor: int, val_actors: Iterable[int], test_actors: Iterable[int]) -> str:
    if actor in set(test_actors):
        return "test"
    return "val" if actor in set(val_actors) else "train"


def from_ravdess(
    root: str | Path,
    *,
    val_actors: Iterable[int] = (21, 22),
    test_actors: Iterable[int] = (23, 24),
    calm_as: str | None = None,
) -> list[Row]:
    """RAVDESS video files (audio-video modality ``01`` only), split by actor.

    RAVDESS has an eighth class, Calm: dropped by default, or mapped to ``calm_as``
    (e.g. ``"Neutral"``).
    """
    rows: list[Row] = []
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        m = _RAVDESS_NAME.match(path.stem)
        if not m:
            raise DatasetError(f"{path}: not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA)")
        modality, _, emotion, _, _, _, actor = m.groups()
        if emotion not in _RAVDESS_EMOTION:
            raise DatasetError(f"{path}: unknown RAVDESS emotion code {emotion!r}")
        if modality != "01":
            continue
        label = _RAVDESS_EMOTION[emotion]
        if label == "Calm":
            if calm_as is None:
                continue
            label = canonical(calm_as, source="dataset.calm_as")
        rows.append(_row(path, _actor_split(int(actor), val_actors, test_actors), label))
    return rows


_CREMAD_EMOTION = {
    "ANG": "Angry", "DIS": "Disgust", "FEA": "Fear", "HAP": "Happy", "NEU": "Neutral", "SAD": "Sad",
}  # fmt: skip
_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")


def from_cremad(
    root: str | Path,
    *,
    val_actors: Iterable[int] = range(1082, 1087),
    test_actors: Iterable[int] = range(1087, 1092),
) -> list[Row]:
    """CREMA-D video files ``<actor>_<sentence>_<EMO>_<level>.flv``, split by actor.

    CREMA-D has six of the seven classes (no Surprise).
    """
    val, test = list(val_actors), list(test_actors)
    rows: list[Row] = []
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        m = _CREMAD_NAME.match(path.stem)
        if not m:
            raise DatasetError(f"{path}: not a CREMA-D file name (ActorID_Sentence_EMO_Level)")
        actor, _, emotion, _ = m.groups()
        if emotion not in _CREMAD_EMOTION:
            raise DatasetError(
                f"{path}: unknown CREMA-D emotion {emotion!r}; expected {sorted(_CREMAD_EMOTION)}"
            )
        rows.append(_row(path, _actor_split(int(actor), val, test), _CREMAD_EMOTION[emotion]))
    return rows
