"""Adapters from the on-disk conventions of public video emotion datasets to sample rows.

Every row is ``{"clip_id", "path", "split", "label", "group"}`` (``group``: the speaker / actor /
movie when the adapter knows it, else ``''``). Clip ids come from :func:`derive_clip_ids`: safe
in file names, HDF5 group names and Snakemake wildcards whatever the file is called; ``path``
keeps the original file name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from avfer.errors import AvferError
from avfer.labels import LabelError, canonical

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".flv", ".webm", ".mpg", ".mpeg", ".m4v")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac")
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS + AUDIO_EXTENSIONS
CLIP_ID_MAX = 100
"""Longest clip id (a file name of the EmotiW submission is ``<clip_id>.txt``)."""
_CLIP_ID = re.compile(rf"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{{0,{CLIP_ID_MAX - 2}}}[A-Za-z0-9_-])?$")
_HASH_CHARS = 8

Row = dict[str, str]
"""One clip: ``clip_id, path, split, label, group`` (all strings, ``''`` when unknown)."""


class DatasetError(AvferError, ValueError):
    """A dataset on disk that does not match its declared layout."""


def is_safe_clip_id(clip_id: str) -> bool:
    """``clip_id`` is 1..100 ASCII letters, digits, ``_ . -``, starts with a letter or digit and
    does not end with a dot (safe as a file name, an HDF5 group and a Snakemake wildcard)."""
    return bool(_CLIP_ID.match(clip_id)) and ".." not in clip_id


def slugify(stem: str) -> str:
    """ASCII slug of a file stem: accents dropped (é → e), other characters → ``_``."""
    text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    text = re.sub(r"\.{2,}", ".", text).strip("._-")
    return text[: CLIP_ID_MAX - _HASH_CHARS - 1].rstrip("._-")


def _short_hash(key: str) -> str:
    return hashlib.sha1(unicodedata.normalize("NFC", key).encode("utf-8")).hexdigest()[:_HASH_CHARS]


def derive_clip_ids(keys: Sequence[str], taken: Iterable[str] = ()) -> list[str]:
    """Stable, unique, safe clip ids for files named by ``keys`` (their paths relative to the
    dataset root, POSIX separators), avoiding the ids in ``taken``.

    A file whose stem is already a safe id, used by no other file, keeps its stem (``000123``,
    ``01-01-05-01-01-01-01``); any other gets ``<slug of the stem>-<8 hex digits of the SHA-1 of
    its key>`` (``clip`` when nothing of the stem is ASCII), so an id never depends on which
    other files exist unless two of them share the stem.
    """
    stems = [PurePosixPath(k).stem if PurePosixPath(k).suffix else PurePosixPath(k).name for k in keys]
    clean = Counter([s for s in stems if is_safe_clip_id(s)])
    taken = set(taken)
    ids = []
    for key, stem in zip(keys, stems, strict=True):
        if is_safe_clip_id(stem) and clean[stem] == 1 and stem not in taken:
            ids.append(stem)
        else:
            ids.append(f"{slugify(stem) or 'clip'}-{_short_hash(key)}")
    return ids


def _key(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _rows(items: Sequence[tuple[Path, str, str, str]], root: Path) -> list[Row]:
    """Rows of ``(path, split, label, group)`` items, with ids derived from paths under ``root``."""
    ids = derive_clip_ids([_key(p, root) for p, *_ in items])
    return [
        {"clip_id": cid, "path": str(p), "split": split, "label": label, "group": group}
        for cid, (p, split, label, group) in zip(ids, items, strict=True)
    ]


def _files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def from_afew(root: str | Path, splits: Mapping[str, str]) -> list[Row]:
    """AFEW/EmotiW tree: ``<root>/<split folder>/<Emotion>/<id>.avi`` (any video or audio
    extension of :data:`MEDIA_EXTENSIONS`).

    ``splits`` maps our split name (train/val/test) to its folder. A folder without emotion
    sub-folders (the EmotiW test set) gives unlabelled clips.
    """
    root = Path(root)
    items: list[tuple[Path, str, str, str]] = []
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
            items += [(p, split, label, "") for p in _files(sub, MEDIA_EXTENSIONS)]
        items += [(p, split, "", "") for p in _files(folder, MEDIA_EXTENSIONS)]
    return _rows(items, root)


def from_manifest(csv_path: str | Path) -> list[Row]:
    """CSV manifest with columns ``path, split`` and optional ``label``, ``clip_id``, ``group``, ``fold``.

    Relative paths are taken relative to the manifest's folder; any media file works (video,
    or audio only). An explicit ``clip_id`` must be safe (:func:`is_safe_clip_id`); an empty
    one is derived from the path (:func:`derive_clip_ids`). ``group``: speaker / actor / movie.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: manifest does not exist")
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = {"path", "split"} - set(df.columns)
    if missing:
        raise DatasetError(f"{csv_path}: manifest lacks column(s) {sorted(missing)}")
    rows: list[Row] = []
    keys: list[str] = []
    for i, rec in enumerate(df.to_dict("records"), start=2):
        path = Path(rec["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        label = rec.get("label", "")
        if label:
            try:
                label = canonical(label, source=f"{csv_path}:{i}")
            except LabelError as exc:
                raise DatasetError(str(exc)) from None
        cid = rec.get("clip_id", "").strip()
        if cid and not is_safe_clip_id(cid):
            raise DatasetError(
                f"{csv_path}:{i}: clip_id {cid!r} of {rec['path']} is not safe: use 1-{CLIP_ID_MAX}"
                " ASCII letters, digits, _ . - (starting with a letter or digit), or leave it empty"
            )
        group = rec.get("group", "").strip()
        fold = str(rec.get("fold", "")).strip()  # an official fold id (dataset.folds)
        split = rec["split"]
        rows.append(
            {"clip_id": cid, "path": str(path), "split": split, "label": label, "group": group, "fold": fold}
        )
        keys.append(Path(rec["path"]).as_posix())
    todo = [i for i, r in enumerate(rows) if not r["clip_id"]]
    ids = derive_clip_ids([keys[i] for i in todo], taken=[r["clip_id"] for r in rows if r["clip_id"]])
    for i, cid in zip(todo, ids, strict=True):
        rows[i]["clip_id"] = cid
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
    """RAVDESS video files (audio-video modality ``01`` only), split by actor; ``group`` is the
    actor (``Actor_12``).

    RAVDESS has an eighth class, Calm: dropped by default, or mapped to ``calm_as``
    (e.g. ``"Neutral"``).
    """
    items: list[tuple[Path, str, str, str]] = []
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
        split = _actor_split(int(actor), val_actors, test_actors)
        items.append((path, split, label, f"Actor_{actor}"))
    return _rows(items, Path(root))


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

    CREMA-D has six of the seven classes (no Surprise). ``group`` is the actor id (``1001``).
    """
    val, test = list(val_actors), list(test_actors)
    items: list[tuple[Path, str, str, str]] = []
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
        items.append((path, _actor_split(int(actor), val, test), _CREMAD_EMOTION[emotion], actor))
    return _rows(items, Path(root))


# In-the-wild dynamic FER datasets with official folds: the sheet's own split is run 0 of
# dataset.folds (fold 1 test, fold 2 val, the rest train); `fold` holds the official fold.
_DFEW_EMOTION = {1: "Happy", 2: "Sad", 3: "Neutral", 4: "Angry", 5: "Surprise", 6: "Disgust", 7: "Fear"}
_MAFW_EMOTION = {
    "anger": "Angry", "disgust": "Disgust", "fear": "Fear", "happiness": "Happy", "neutral": "Neutral",
    "sadness": "Sad", "surprise": "Surprise",
}  # fmt: skip  # contempt, anxiety, helplessness, disappointment: not among the 7 classes, dropped


def _media_by(root: Path, key_of, skip: Sequence[str] = ()) -> dict:
    """Media files under ``root`` (not under the folders ``skip``) by ``key_of(path)``."""
    out: dict = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in MEDIA_EXTENSIONS or not path.is_file():
            continue
        if any(part in skip for part in path.relative_to(root).parts[:-1]):
            continue
        key = key_of(path)
        if key is not None:
            out.setdefault(key, path)
    return out


def _fold_split(fold: int) -> str:
    return "test" if fold == 1 else "val" if fold == 2 else "train"


def _fold_rows(found: Sequence[tuple[Path, str, int]], root: Path) -> list[Row]:
    rows = _rows([(p, _fold_split(k), label, "") for p, label, k in found], root)
    for row, (_, _, k) in zip(rows, found, strict=True):
        row["fold"] = str(k)
    return rows


def _official_folds(files: Sequence[Path], name: str) -> list[Path]:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DatasetError(f"{missing[0]}: {name} fold file does not exist")
    return list(files)


def dfew_fold_files(root: str | Path) -> list[Path]:
    """DFEW's official fold files (``set_1.csv`` ... ``set_5.csv``)."""
    split_dir = Path(root) / "EmoLabel_DataSplit" / "test(single-labeled)"
    return [split_dir / f"set_{k}.csv" for k in range(1, 6)]


def mafw_fold_files(root: str | Path) -> list[Path]:
    """MAFW's official fold files (``set_<k>/test.txt``, k = 1..5)."""
    split_dir = Path(root) / "Train & Test Set" / "single" / "no_caption"
    return [split_dir / f"set_{k}" / "test.txt" for k in range(1, 6)]


def ferv39k_files(root: str | Path) -> list[Path]:
    """FERV39k's official train and test lists."""
    setups = Path(root) / "4_setups" / "All_scenes"
    return [setups / "train_All.csv", setups / "test_All.csv"]


def from_dfew(root: str | Path) -> list[Row]:
    """DFEW: ``<root>/EmoLabel_DataSplit/test(single-labeled)/set_<k>.csv`` (``video_name,label``,
    label 1-7 = Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear) for k = 1..5 give each clip
    its official fold (the fold whose test set holds it) and label; the clips are the video
    files anywhere else under ``root`` named by their number (``Clip/original/00001.mp4``)."""
    root = Path(root)
    csvs = _official_folds(dfew_fold_files(root), "DFEW")
    media = _media_by(root, lambda p: int(p.stem) if p.stem.isdigit() else None, ("EmoLabel_DataSplit",))
    found: list[tuple[Path, str, int]] = []
    for k, csv in enumerate(csvs, start=1):
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        if not {"video_name", "label"} <= set(df.columns):
            raise DatasetError(f"{csv}: DFEW fold file needs columns video_name,label")
        for i, (name, label) in enumerate(zip(df["video_name"], df["label"], strict=True), start=2):
            if not name.strip().isdigit() or not label.strip().isdigit() or int(label) not in _DFEW_EMOTION:
                raise DatasetError(f"{csv}:{i}: not a DFEW row (video number, label 1-7): {name!r},{label!r}")
            path = media.get(int(name))
            if path is None:
                raise DatasetError(f"{csv}:{i}: no video file for DFEW clip {int(name):05d} under {root}")
            found.append((path, _DFEW_EMOTION[int(label)], k))
    return _fold_rows(found, root)


def from_mafw(root: str | Path) -> list[Row]:
    """MAFW: ``<root>/Train & Test Set/single/no_caption/set_<k>/test.txt`` (``00019.mp4 anger``
    per line) for k = 1..5 give each clip its official fold and label; clips are the files
    anywhere under ``root`` of those names (``data/clips/00019.mp4``). Its four classes outside
    the seven (contempt, anxiety, helplessness, disappointment) are dropped."""
    root = Path(root)
    files = _official_folds(mafw_fold_files(root), "MAFW")
    media = _media_by(root, lambda p: p.stem, ("Train & Test Set",))
    found: list[tuple[Path, str, int]] = []
    for k, txt in enumerate(files, start=1):
        for i, line in enumerate(txt.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DatasetError(f"{txt}:{i}: not a MAFW line '<clip file> <label>': {line!r}")
            name, label = parts[0], parts[1].lower()
            if label not in _MAFW_EMOTION and label not in (
                "contempt",
                "anxiety",
                "helplessness",
                "disappointment",
            ):
                raise DatasetError(f"{txt}:{i}: unknown MAFW label {parts[1]!r}")
            path = media.get(PurePosixPath(name).stem)
            if path is None:
                raise DatasetError(f"{txt}:{i}: no media file for MAFW clip {name!r} under {root}")
            if label in _MAFW_EMOTION:
                found.append((path, _MAFW_EMOTION[label], k))
    return _fold_rows(found, root)


def from_ferv39k(root: str | Path, *, val_fraction: float = 0.1) -> list[Row]:
    """FERV39k: ``<root>/4_setups/All_scenes/train_All.csv`` and ``test_All.csv`` (one clip per
    line, ``<Scene>/<Emotion>/<clip> <Emotion>``; the official train/test split, no folds); the
    clips are the video files under ``root`` whose last three path parts are that key
    (``0_7_LabelClips/Action/Sad/0010.mp4``). ``val`` is about ``val_fraction`` of train, picked
    by a hash of each clip's key (stable whatever else is on disk)."""
    root = Path(root)
    files = _official_folds(ferv39k_files(root), "FERV39k")
    media = _media_by(root, lambda p: "/".join([*p.parent.parts[-2:], p.stem]), ("4_setups",))
    items: list[tuple[Path, str, str, str]] = []
    for txt, split in zip(files, ("train", "test"), strict=True):
        for i, line in enumerate(txt.read_text().splitlines(), start=1):
            parts = line.strip().rsplit(None, 1)  # the key may hold spaces, the label does not
            if not parts:
                continue
            if len(parts) != 2:
                raise DatasetError(
                    f"{txt}:{i}: not a FERV39k line '<Scene>/<Emotion>/<clip> <Emotion>': {line!r}"
                )
            key = PurePosixPath(parts[0])
            try:
                label = canonical(parts[1], source=f"{txt}:{i}")
            except LabelError as exc:
                raise DatasetError(str(exc)) from None
            path = media.get("/".join([*key.parent.parts[-2:], key.stem]))
            if path is None:
                raise DatasetError(f"{txt}:{i}: no video file for FERV39k clip {parts[0]!r} under {root}")
            if split == "train" and int(_short_hash(parts[0]), 16) / 16**_HASH_CHARS < val_fraction:
                split_of = "val"
            else:
                split_of = split
            items.append((path, split_of, label, ""))
    return _rows(items, root)
