"""``avfer predict INPUT...``: expand the inputs (files, folders, globs), predict each one and
write its outputs; a bad input gets one line on stderr (and a ``failed`` summary) while the
others go on."""

from __future__ import annotations

import glob
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from avfer.errors import AvferError
from avfer.predict.draw import draw_overlay
from avfer.predict.runner import IMAGE_SUFFIXES, Prediction, Predictor, failed_summary, read_image
from avfer.predict.writers import write_frames_csv, write_image, write_summary

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}
)
OUTPUTS = ("csv", "json", "annotated", "timeline")


def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files to predict (folders: their images and videos, recursively; globs expanded) and
    one error line per input that names nothing."""
    files: list[Path] = []
    errors: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES
            )
            files += found
            if not found:
                errors.append(f"{path}: folder has no image or video files")
        elif path.exists() or not glob.has_magic(item):
            files.append(path)  # a missing file is reported when it is processed
        else:
            matched = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            files += matched
            if not matched:
                errors.append(f"{item}: no file matches")
    return list(dict.fromkeys(files)), errors


def output_names(files: Sequence[Path]) -> list[str]:
    """An output name per file: its stem, made unique with ``-2``, ``-3``... ."""
    seen: dict[str, int] = {}
    out = []
    for f in files:
        stem = f.stem or f.name
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def predict_one(
    predictor: Predictor,
    path: Path,
    out_dir: Path,
    name: str,
    outputs: Sequence[str],
    progress: Any = None,
    title: str | None = None,
) -> Prediction:
    """Predict one file and write the requested ``outputs`` as ``out_dir/name.*`` (``title``:
    of the timeline, default the file's name)."""
    is_image = path.suffix.lower() in IMAGE_SUFFIXES
    if is_image:
        image = read_image(path)
        pred, marks = predictor.image(image, str(path))
        if "annotated" in outputs:
            suffix = ".png" if path.suffix.lower() == ".png" else ".jpg"
            write_image(out_dir / f"{name}.annotated{suffix}", draw_overlay(image, marks))
    else:
        annotated = out_dir / f"{name}.annotated.mp4" if "annotated" in outputs else None
        timeline = out_dir / f"{name}.timeline.png" if "timeline" in outputs else None
        pred = predictor.video(path, annotated=annotated, timeline=timeline, progress=progress, title=title)
    if "csv" in outputs:
        write_frames_csv(out_dir / f"{name}.frames.csv", pred.frames)
    if "json" in outputs:
        write_summary(out_dir / f"{name}.json", pred.summary)
    return pred


def one_line(exc: BaseException, path: Path) -> str:
    """The one-line message of ``exc`` for input ``path``: an :class:`AvferError`'s own first line
    (it names the file), else ``"<path>: <ExceptionType>: <first line>"``."""
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, AvferError):
        return text or f"{path}: {type(exc).__name__}"
    return f"{path}: {type(exc).__name__}" + (f": {text}" if text else "")


def predict_input(
    predictor: Predictor,
    path: Path,
    out_dir: Path,
    name: str,
    outputs: Sequence[str],
    progress: Any = None,
    title: str | None = None,
) -> dict[str, Any]:
    """:func:`predict_one`, an input that cannot be read included: its summary (``status`` ok,
    no_face or failed; ``error`` the one-line message), also written as ``name.json`` when
    ``outputs`` has ``json``."""
    try:
        return predict_one(predictor, path, out_dir, name, outputs, progress, title).summary
    except Exception as exc:  # one input's failure, whatever it is, never ends the batch
        msg = one_line(exc, path)
        if not isinstance(exc, AvferError):
            log.debug("%s", path, exc_info=exc)
        kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
        summary = failed_summary(str(path), kind, msg, predictor.bundle)
        if "json" in outputs:
            write_summary(out_dir / f"{name}.json", summary)
        return summary


def predict_files(
    predictor: Predictor,
    inputs: Sequence[str],
    out_dir: str | Path,
    *,
    outputs: Sequence[str] = OUTPUTS,
    progress: bool | None = None,
) -> int:
    """Predict every input; returns the number of inputs that failed or had no face (each
    reported in one line on stderr)."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, errors = expand_inputs(inputs)
    for line in errors:
        print(f"avfer: error: {line}", file=sys.stderr)
    bad = len(errors)
    disable = None if progress is None else not progress
    bar = tqdm(total=len(files), unit="file", desc="inputs", disable=disable, position=0)
    frames = tqdm(total=0, unit="frame", desc="frames", disable=disable, position=1, leave=False)
    for path, name in zip(files, output_names(files), strict=True):
        bar.set_postfix_str(path.name[-40:])
        summary = predict_input(predictor, path, out, name, outputs, frames)
        if summary["status"] != "ok":
            bad += 1
            tqdm.write(f"avfer: error: {summary['error']}", file=sys.stderr)
        bar.update(1)
    frames.close()
    bar.close()
    return bad
