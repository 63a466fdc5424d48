"""The face cache of one shard (``faces/<shard>.h5``) and the per-split face summary.

Each clip of the shard becomes one group (see :mod:`avfer.io.schemas`, kind ``faces``) with
status ``ok`` (the main subject found in at least one frame), ``no_face`` (found in none: the
arrays are still written, all ``has_face`` False), ``no_video`` (an audio-only file: written
like ``no_face``, on the grid of its audio) or ``failed`` (unreadable video: no arrays,
``error`` holds the one-line reason). A bad clip does not stop the shard; the job fails (and
writes nothing) when ffmpeg/ffprobe are missing or broken or when every clip crashes. The run
stops at :func:`summarize_faces` when more than ``faces.max_failed_fraction`` of a split's clips
failed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from avfer.errors import AvferError
from avfer.faces.align import face_template
from avfer.faces.detect import FaceDetector
from avfer.faces.pipeline import FaceSettings, face_layout, process_clip
from avfer.io import ClipWriter, atomic_path, config_hash, h5_writer, open_cache, write_clip, write_json
from avfer.io.failures import check_failures
from avfer.io.hdf5 import CLIPS
from avfer.video import check_ffmpeg

log = logging.getLogger(__name__)

CREATOR = "detect_faces"
SUMMARY_COLUMNS = ("clip_id", "shard", "label", "status", "frames", "faces", "face_ratio", "error")


def build_face_shard(
    rows: pd.DataFrame,
    out_path: str | os.PathLike[str],
    cfg: dict[str, Any] | FaceSettings | None = None,
    *,
    device: str | None = None,
    detector: FaceDetector | None = None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Detect, track and align the faces of every clip in ``rows`` (sample-sheet rows:
    ``clip_id, path, split, label``) into the face cache ``out_path`` (written atomically).

    ``cfg``: the ``faces`` config section (defaults filled from the schema); ``device``
    overrides ``cfg["device"]``. ``threads``: CPU threads of the job: ffmpeg decodes with
    ``threads // 2`` (at least 1), torch computes with ``threads - 1`` (at least 1); oversubscribed
    torch threads are several times slower than one. ``None`` leaves both as they are.
    A clip that cannot be read is ``failed`` and the shard goes on (the failure budget is the
    split's: :func:`summarize_faces`).
    Returns one summary dict per clip (``SUMMARY_COLUMNS``).
    """
    check_ffmpeg()
    decode_threads = 0
    if threads is not None:
        torch.set_num_threads(max(1, threads - 1))
        decode_threads = max(1, threads // 2)
    s = cfg if isinstance(cfg, FaceSettings) else FaceSettings.from_config(cfg)
    det = detector or s.detector(device)
    settings = s.result_config()
    compression = None if s.compression == "none" else s.compression
    shard = str(rows["shard"].iloc[0]) if "shard" in rows and len(rows) else Path(out_path).stem
    log.info(
        "%s: %d clips on %s, %d torch threads (%s)",
        shard, len(rows), det.device, torch.get_num_threads(), json.dumps(settings),
    )  # fmt: skip
    summary: list[dict[str, Any]] = []
    crashes = 0
    with h5_writer(
        out_path,
        "faces",
        creator=CREATOR,
        config_hash=config_hash(settings),
        crop_size=s.crop_size,
        margin=s.margin,
        template=face_template(s.crop_size, s.margin),
        landmark_order="left_eye,right_eye,nose,mouth_left,mouth_right",
        coordinates="display pixels of the source video (square pixels, rotation applied), x right, y down",
        detector=f"facenet-pytorch MTCNN (keyframe_every={s.keyframe_every}, O-Net tracking)",
        faces_config=json.dumps(settings, sort_keys=True),
    ) as f:
        layout = face_layout(s.crop_size)
        for rec in rows.itertuples(index=False):
            started = time.perf_counter()
            row = {"clip_id": rec.clip_id, "shard": shard, "label": rec.label, "error": ""}
            out = ClipWriter(
                f, rec.clip_id, layout, split=rec.split, label=rec.label, compression=compression
            )
            try:
                clip = process_clip(rec.path, det, s, decode_threads=decode_threads, sink=out.append)
            except (MemoryError, torch.cuda.OutOfMemoryError):
                raise
            except Exception as exc:  # bad video (AvferError): recorded, the shard goes on
                out.discard()
                expected = isinstance(exc, AvferError)
                if expected:
                    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    log.error("clip %s failed: %s", rec.clip_id, msg)
                else:  # unexpected: record it, but a shard of crashes is a bug
                    crashes += 1
                    msg = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    log.exception("clip %s (%s) crashed", rec.clip_id, rec.path)
                write_clip(f, rec.clip_id, {}, split=rec.split, label=rec.label, status="failed", error=msg)
                f[CLIPS][rec.clip_id].attrs["path"] = str(rec.path)
                summary.append({**row, "status": "failed", "frames": 0, "faces": 0, "error": msg})
                continue
            status = clip.status
            out.close(status, path=str(rec.path), **clip.stats)
            n, found = clip.stats["frames"], clip.stats["faces"]
            summary.append({**row, "status": status, "frames": n, "faces": found})
            log.info(
                "clip %s: %s, face in %d/%d frames (%d keyframes, %d re-detected, %d missing), %.1f fps",
                rec.clip_id, status, found, n, clip.stats["keyframes"], clip.stats["redetected"],
                clip.stats["missing_frames"], n / max(time.perf_counter() - started, 1e-9),
            )  # fmt: skip
        if len(rows) and crashes == len(rows):
            raise RuntimeError(f"{out_path}: every clip of the shard crashed (see the log above)")
    for row in summary:
        row["face_ratio"] = round(row["faces"] / row["frames"], 4) if row["frames"] else 0.0
    return summary


def shard_summary(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per-clip summary rows of one face cache, read from the clip attributes only."""
    out = []
    with open_cache(path, "faces") as f:
        for clip_id, g in f[CLIPS].items():
            frames, faces = int(g.attrs.get("frames", 0)), int(g.attrs.get("faces", 0))
            out.append(
                {
                    "clip_id": clip_id,
                    "shard": Path(path).stem,
                    "label": str(g.attrs["label"]),
                    "status": str(g.attrs["status"]),
                    "frames": frames,
                    "faces": faces,
                    "face_ratio": round(faces / frames, 4) if frames else 0.0,
                    "error": str(g.attrs.get("error", "")),
                }
            )
    return out


def summarize_faces(
    paths: Iterable[str | os.PathLike[str]],
    json_path: str | os.PathLike[str],
    csv_path: str | os.PathLike[str],
    *,
    split: str,
    max_failed_fraction: float = 1.0,
) -> dict[str, Any]:
    """Write the per-split face summary: ``json_path`` (counts, clips without a face, failed
    clips with their errors) and ``csv_path`` (one row per clip). Returns the JSON dict. More
    than ``max_failed_fraction`` of the split's clips failed:
    :class:`~avfer.io.failures.FailedSplitError` (one line naming the first failures), nothing
    written."""
    rows = [row for p in sorted(map(str, paths)) for row in shard_summary(p)]
    df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    failed = df[df["status"] == "failed"]
    failures = dict(zip(failed["clip_id"], failed["error"], strict=True))
    check_failures(failures, len(df), max_failed_fraction, f"faces of split {split}", "faces")
    counts = df["status"].value_counts()
    report = {
        "split": split,
        "clips": len(df),
        "ok": int(counts.get("ok", 0)),
        "no_face": int(counts.get("no_face", 0)),
        "no_video": int(counts.get("no_video", 0)),
        "failed": int(counts.get("failed", 0)),
        "frames": int(df["frames"].sum()),
        "frames_with_face": int(df["faces"].sum()),
        "face_ratio": round(float(df["faces"].sum() / max(df["frames"].sum(), 1)), 4),
        "no_face_clips": df.loc[df["status"] == "no_face", "clip_id"].tolist(),
        "no_video_clips": df.loc[df["status"] == "no_video", "clip_id"].tolist(),
        "failed_clips": [
            {"clip_id": r.clip_id, "error": r.error} for r in df[df["status"] == "failed"].itertuples()
        ],
    }
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    write_json(json_path, report)
    return report
