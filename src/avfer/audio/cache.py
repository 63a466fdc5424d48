"""One clip → aligned LLDs + functionals; one shard of the sample sheet → one audio HDF5 cache.

Per clip: probe (grid length ``T``, stream start times) → decode to mono float32 (ffmpeg pipe)
→ crop to the video span → openSMILE LLDs + functionals (one pass) → pool the LLDs onto the
25 fps grid (or, ``audio.lld_segments``, openSMILE on each grid frame's own 40 ms segment).
Every clip gets all three datasets (``lld`` [T, D], ``lld_mask`` [T], ``functionals`` [D'])
whatever its status, so readers never special-case shapes:

* ``ok``: audio decoded; ``lld_mask`` False where the audio does not reach a grid frame.
* ``no_audio``: the clip has no audio stream (or no usable samples): zeros, mask all False.
* ``failed``: unreadable clip or undecodable audio: zeros (``T = 0`` when even the video could
  not be probed) and a one-line ``error`` naming the file.

An audio-only file (``.wav``, ``.m4a``, ...) is a clip like any other: its grid spans the audio
stream. The shard stops (nothing written) when ffmpeg/ffprobe are missing or broken; the run
stops at :func:`summarize_audio` when more than ``max_failed_fraction`` of a split's clips fail
(``no_audio`` is not a failure).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from avfer.audio.align import lld_centres, pool_to_grid
from avfer.audio.extract import AudioDecodeError, decode_audio
from avfer.audio.lld import BUILTIN_SETS, FeatureSetError, LldExtractor, file_sha256
from avfer.errors import AvferError
from avfer.io import config_hash, h5_writer, open_cache, write_clip
from avfer.io.failures import check_failures
from avfer.video import GRID_FPS, check_ffmpeg, grid_length, probe

log = logging.getLogger("avfer.audio")

CROP_MARGIN = 0.1
"""Seconds of audio kept beyond each end of the video span (complete windows at the edges)."""
MIN_DECODED = 0.9
"""A decode with ffmpeg errors must still cover this fraction of the video span, else 'failed'."""
JOB_KEYS = ("max_failed_fraction",)
"""Keys of the ``audio`` section that decide whether the job fails, not what a cache holds."""


@dataclass
class ClipAudio:
    """The audio record of one clip (what :func:`write_clip` stores, plus bookkeeping)."""

    status: str
    lld: np.ndarray
    lld_mask: np.ndarray
    functionals: np.ndarray
    error: str = ""
    warning: str = ""
    offset: float = 0.0
    """Video-timeline time (s) of the first audio sample used."""
    audio_seconds: float = 0.0
    """Seconds of audio analysed (after cropping to the video span)."""

    def data(self) -> dict[str, np.ndarray]:
        """The per-clip datasets of the ``audio`` cache kind."""
        return {"lld": self.lld, "lld_mask": self.lld_mask, "functionals": self.functionals}


@dataclass
class _Empty:
    n_lld: int
    n_func: int
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, status: str, n_frames: int, error: str) -> ClipAudio:
        return ClipAudio(
            status=status,
            lld=np.zeros((n_frames, self.n_lld), np.float32),
            lld_mask=np.zeros(n_frames, bool),
            functionals=np.zeros(self.n_func, np.float32),
            error=error,
        )


def lld_column_names(names: Iterable[str], with_std: bool) -> list[str]:
    """Column names of the pooled ``lld`` array: the LLD names, then ``<name>_std`` if requested."""
    names = list(names)
    return names + [f"{n}_std" for n in names] if with_std else names


def check_segments(extractor: LldExtractor) -> None:
    """Raise :class:`FeatureSetError` when the feature set gives no LLD frame on a 40 ms segment
    (:attr:`LldExtractor.fits_grid_frame`)."""
    if not extractor.fits_grid_frame:
        raise FeatureSetError(
            f"audio.lld_segments: {extractor.feature_set} gives no LLD frame on a 40 ms segment (its LLD"
            " windows are longer); use feature_set emo_large or lld_segments: false"
        )


def segment_llds(
    signal: np.ndarray,
    sr: int,
    offset: float,
    n_frames: int,
    extractor: LldExtractor,
    *,
    with_std: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """LLDs of each grid frame's own 40 ms segment (``audio.lld_segments``, the reference thesis's
    pydub segments): openSMILE runs on the samples of ``[t / 25, (t + 1) / 25)`` s of the video
    timeline alone (``offset`` = video time of ``signal[0]``), and the segment's LLD frames are
    pooled into grid frame ``t``; frames whose segment has no sample or is shorter than one
    analysis window are invalid. Same shapes as :func:`pool_to_grid`."""
    check_segments(extractor)
    d = len(extractor.lld_names)
    out = np.zeros((n_frames, 2 * d if with_std else d), np.float32)
    mask = np.zeros(n_frames, bool)
    for t in range(n_frames):
        i0 = max(0, math.ceil((t / GRID_FPS - offset) * sr))
        i1 = min(len(signal), math.ceil(((t + 1) / GRID_FPS - offset) * sr))
        if i1 <= i0:
            continue
        seg = extractor(signal[i0:i1])
        if len(seg.lld):
            pooled, _ = pool_to_grid(seg.lld, np.zeros(len(seg.lld)), 1, with_std=with_std)
            out[t], mask[t] = pooled[0], True
    return out, mask


def process_clip(
    path: str | Path, extractor: LldExtractor, *, with_std: bool = False, segments: bool = False
) -> ClipAudio:
    """Aligned LLDs and functionals of one video (or audio-only) file (never raises for a bad file);
    ``segments``: LLDs of each grid frame's own 40 ms segment (:func:`segment_llds`) instead of
    one pass pooled onto the grid (functionals always from the whole clip)."""
    empty = _Empty(len(extractor.lld_names) * (2 if with_std else 1), len(extractor.functional_names))
    try:
        info = probe(path, require_video=False)
    except AvferError as exc:
        return empty("failed", 0, str(exc))
    n_frames = grid_length(info.duration)
    if not info.has_audio:
        return empty("no_audio", n_frames, f"{path}: no audio stream")
    try:
        dec = decode_audio(path, extractor.sample_rate)
    except AudioDecodeError as exc:
        return empty("failed", n_frames, str(exc))
    sr = dec.sample_rate
    first = dec.start_time if dec.start_time is not None else info.audio_start_time
    offset = first - info.start_time
    span = n_frames / GRID_FPS
    i0 = max(0, math.ceil((-CROP_MARGIN - offset) * sr))
    i1 = min(len(dec.signal), math.floor((span + CROP_MARGIN - offset) * sr))
    signal = dec.signal[i0 : max(i0, i1)]
    offset += i0 / sr
    covered = max(0.0, min(span, offset + len(signal) / sr) - max(0.0, offset))
    warning = f"{path}: ffmpeg reported decoding errors ({dec.errors[0]})" if dec.errors else ""
    if not warning and len(signal) and not np.any(signal):
        warning = f"{path}: the audio track is digital silence (all samples zero)"
    if dec.errors and covered < MIN_DECODED * span:
        return empty(
            "failed",
            n_frames,
            f"{path}: corrupt audio track, decoded {covered:.2f} of {span:.2f} s ({dec.errors[0]})",
        )
    if covered <= 0:
        return empty("no_audio", n_frames, f"{path}: the audio track holds no samples inside the video span")
    out = extractor(signal)
    if segments:
        lld, mask = segment_llds(signal, sr, offset, n_frames, extractor, with_std=with_std)
    else:
        lld, mask = pool_to_grid(
            out.lld, lld_centres(out.start, out.window, offset), n_frames, with_std=with_std
        )
    if not mask.any():
        return empty(
            "no_audio", n_frames, f"{path}: audio ({covered:.3f} s) shorter than one analysis window"
        )
    return ClipAudio(
        status="ok",
        lld=lld,
        lld_mask=mask,
        functionals=np.nan_to_num(out.functionals).astype(np.float32),
        warning=warning,
        offset=offset,
        audio_seconds=len(signal) / sr,
    )


def set_names(f: h5py.File, key: str, names: list[str]) -> None:
    """Store a list of names as root attribute ``key``; lists too big for an HDF5 attribute
    (64 KiB, e.g. the 6373 ComParE functionals) go to a root dataset ``key`` instead."""
    try:
        f.attrs[key] = names
    except (OSError, ValueError, RuntimeError):
        if key in f.attrs:
            del f.attrs[key]
        f.create_dataset(key, data=np.array(names, dtype=object), dtype=h5py.string_dtype())


def feature_names(f: h5py.File, key: str) -> list[str]:
    """Read names stored by :func:`set_names` (``lld_names`` or ``functional_names``)."""
    raw = f.attrs[key] if key in f.attrs else f[key][()]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(raw)]


def read_audio_names(path: str | Path) -> tuple[list[str], list[str]]:
    """``(lld column names, functional names)`` of an audio cache file."""
    with open_cache(path, "audio") as f:
        return feature_names(f, "lld_names"), feature_names(f, "functional_names")


def _root_attrs(cfg: Mapping[str, Any], extractor: LldExtractor, with_std: bool) -> dict[str, Any]:
    import opensmile

    custom = extractor.feature_set not in BUILTIN_SETS
    return {
        "feature_set": str(extractor.feature_set),
        "feature_config": str(extractor.config_path) if custom else "",
        "feature_config_sha256": file_sha256(extractor.config_path),
        "lld_level": extractor.lld_level,
        "functionals_level": extractor.functionals_level or "",
        "sample_rate": int(extractor.sample_rate),
        "lld_std": bool(with_std),
        "lld_segments": bool(cfg.get("lld_segments", False)),
        "lld_window": float(extractor.lld_window or 0.0),
        "opensmile_version": str(opensmile.__version__),
    }


def build_audio_shard(
    rows: pd.DataFrame,
    out_path: str | Path,
    cfg: Mapping[str, Any],
    *,
    creator: str = "extract_audio_features",
) -> dict[str, Any]:
    """Write the audio cache of the clips in ``rows`` (sample-sheet rows) to ``out_path``.

    ``cfg`` is the ``audio`` config section. A clip that cannot be read becomes a ``failed``
    record (one log line naming the file); the rest of the shard is still done (the failure
    budget is the split's: :func:`summarize_audio`). Returns the shard summary (also stored as
    JSON in the root attribute ``summary``).
    """
    cfg = {k: v for k, v in cfg.items() if k not in JOB_KEYS}
    check_ffmpeg()
    with_std = bool(cfg.get("lld_std", False))
    segments = bool(cfg.get("lld_segments", False))
    extractor = LldExtractor.from_config(cfg)
    if segments:
        check_segments(extractor)
    names = lld_column_names(extractor.lld_names, with_std)
    counts = {"ok": 0, "no_audio": 0, "failed": 0}
    summary: dict[str, Any] = {
        "clips": len(rows),
        "status": counts,
        "no_audio": {},
        "failed": {},
        "warnings": {},
    }
    t0 = time.perf_counter()
    audio_s = frames = frames_audio = 0.0
    with h5_writer(
        out_path,
        "audio",
        creator=creator,
        config_hash=config_hash(cfg),
        **_root_attrs(cfg, extractor, with_std),
    ) as f:
        set_names(f, "lld_names", names)
        set_names(f, "functional_names", extractor.functional_names)
        for row in rows.itertuples(index=False):
            try:
                rec = process_clip(row.path, extractor, with_std=with_std, segments=segments)
            except Exception as exc:  # an unexpected library error must not lose the shard
                log.exception("clip %s: unexpected error", row.clip_id)
                rec = _Empty(len(names), len(extractor.functional_names))(
                    "failed", 0, f"{row.path}: {type(exc).__name__}: {exc}".splitlines()[0]
                )
            g = write_clip(
                f,
                row.clip_id,
                rec.data(),
                split=row.split,
                label=row.label,
                status=rec.status,
                error=rec.error,
            )
            g.attrs["audio_offset"] = rec.offset
            g.attrs["audio_seconds"] = rec.audio_seconds
            counts[rec.status] += 1
            audio_s += rec.audio_seconds
            frames += len(rec.lld_mask)
            frames_audio += int(rec.lld_mask.sum())
            if rec.status == "failed":
                log.error("clip %s failed: %s", row.clip_id, rec.error)
                summary["failed"][row.clip_id] = rec.error
            elif rec.status == "no_audio":
                log.warning("clip %s: no audio: %s", row.clip_id, rec.error)
                summary["no_audio"][row.clip_id] = rec.error
            if rec.warning:
                log.warning("clip %s: %s", row.clip_id, rec.warning)
                summary["warnings"][row.clip_id] = rec.warning
        elapsed = time.perf_counter() - t0
        summary.update(
            frames=int(frames),
            frames_with_audio=int(frames_audio),
            audio_seconds=round(audio_s, 3),
            seconds=round(elapsed, 3),
            realtime_factor=round(audio_s / elapsed, 1) if elapsed > 0 else None,
        )
        f.attrs["summary"] = json.dumps(summary)
    log.info("%s: %d clips %s, %.1f s audio in %.1f s", out_path, len(rows), counts, audio_s, elapsed)
    return summary


def summarize_audio(
    paths: Iterable[str | Path], *, split: str = "", max_failed_fraction: float = 1.0
) -> dict[str, Any]:
    """Merge the summaries of several audio shards (e.g. one split) into one. More than
    ``max_failed_fraction`` of the clips failed: :class:`~avfer.io.failures.FailedSplitError`
    (one line naming the first failures)."""
    total: dict[str, Any] = {
        "shards": 0,
        "clips": 0,
        "status": {"ok": 0, "no_audio": 0, "failed": 0},
        "no_audio": {},
        "failed": {},
        "warnings": {},
        "frames": 0,
        "frames_with_audio": 0,
        "audio_seconds": 0.0,
    }
    for path in paths:
        with open_cache(path, "audio") as f:
            s = json.loads(str(f.attrs["summary"]))
        total["shards"] += 1
        for key in ("clips", "frames", "frames_with_audio", "audio_seconds"):
            total[key] += s[key]
        for key, n in s["status"].items():
            total["status"][key] += n
        for key in ("no_audio", "failed", "warnings"):
            total[key].update(s[key])
    what = f"audio of split {split}" if split else "audio caches"
    check_failures(total["failed"], total["clips"], max_failed_fraction, what, "audio")
    total["audio_seconds"] = round(total["audio_seconds"], 3)
    total["frame_coverage"] = (
        round(total["frames_with_audio"] / total["frames"], 4) if total["frames"] else 0.0
    )
    return total
