"""Writing the demo dataset: ffmpeg muxing, the AFEW tree, ``demo_truth.csv``, ``fer2013.csv``."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import wavfile

from avfer.demo.design import (
    CLASS_DESIGN,
    CLIP_STREAM,
    FER2013_ORDER,
    FER_STREAM,
    FPS,
    SPLIT_DIRS,
    ClipSpec,
    plan_clips,
)
from avfer.demo.faces import render_clip, render_still
from avfer.demo.voice import SR, synth_voice
from avfer.io.atomic import atomic_path, write_text
from avfer.labels import EMOTIONS

TRUTH_COLUMNS = (
    "clip_id",
    "split",
    "label",
    "path",
    "face_group",
    "voice_group",
    "has_audio",
    "face_exit",
    "n_frames",
    "exit_start",
    "exit_end",
)
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]


def mux_avi(path: Path, frames: np.ndarray, audio: np.ndarray | None, *, fps: int = FPS) -> None:
    """Atomically write an .avi: mpeg4 (XVID tag) video from RGB ``frames`` (n, h, w, 3)
    piped to ffmpeg, plus 16 kHz mono pcm_s16le audio if ``audio`` is given (else no
    audio stream at all). Single-threaded and bitexact, so the bytes are reproducible."""
    n, h, w, _ = frames.shape
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    with tempfile.TemporaryDirectory(prefix="avfer-demo-") as td, atomic_path(path) as tmp:
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps)]
        cmd += ["-i", "pipe:0"]
        if audio is not None:
            wav = Path(td) / "audio.wav"
            pcm = np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16)
            wavfile.write(wav, SR, pcm)
            cmd += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0"]
            cmd += ["-c:a", "pcm_s16le", "-ar", str(SR), "-ac", "1"]
        else:
            cmd += ["-map", "0:v:0"]
        cmd += ["-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "4", "-pix_fmt", "yuv420p"]
        cmd += ["-threads", "1", *BITEXACT, "-f", "avi", str(tmp)]
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"ffmpeg failed writing {path} ({n} frames): {err}")


def write_clip(spec: ClipSpec, root: Path, *, seed: int, frame_size: int) -> Path:
    """Render and write one clip; its generator is seeded from (seed, clip index) only."""
    rng = np.random.default_rng([seed, CLIP_STREAM, spec.index])
    video = render_clip(spec.face_group, spec.n_frames, frame_size, rng, exit_frames=spec.exit_frames)
    audio = None
    if spec.has_audio:
        audio = synth_voice(spec.voice_group, spec.n_frames * SR // FPS, rng)
    path = root / spec.relpath
    mux_avi(path, video, audio)
    return path


def fer_rows(*, seed: int, per_class: int) -> list[tuple[int, str, str]]:
    """FER2013 rows (emotion index in FER2013 order, pixels, Usage): ~80/10/10 per class,
    Training rows first, then PublicTest, then PrivateTest (as in the real file)."""
    n_train, n_public = round(0.8 * per_class), round(0.1 * per_class)
    usages: dict[str, list[tuple[int, str, str]]] = {"Training": [], "PublicTest": [], "PrivateTest": []}
    for c, label in enumerate(EMOTIONS):
        for k in range(per_class):
            rng = np.random.default_rng([seed, FER_STREAM, c, k])
            img = render_still(CLASS_DESIGN[label][0], rng, 48)
            usage = "Training" if k < n_train else "PublicTest" if k < n_train + n_public else "PrivateTest"
            usages[usage].append((FER2013_ORDER.index(label), " ".join(map(str, img.ravel())), usage))
    rng = np.random.default_rng([seed, FER_STREAM])
    return [rows[i] for rows in usages.values() for i in rng.permutation(len(rows))]


def _csv_text(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def truth_rows(plan: list[ClipSpec]) -> list[tuple[Any, ...]]:
    """Rows of ``demo_truth.csv`` (see :data:`TRUTH_COLUMNS`), in plan order."""
    rows = []
    for s in plan:
        a, b = s.exit_frames or ("", "")
        rows.append(
            (s.clip_id, s.split, s.label, s.relpath, s.face_group, s.voice_group)
            + (s.has_audio, s.exit_frames is not None, s.n_frames, a, b)
        )
    return rows


def _remove_stale(root: Path, plan: list[ClipSpec]) -> None:
    """Delete .avi files (and leftover temporaries) in the split folders that the plan does
    not contain, so a re-run with a smaller config leaves no orphan clips behind."""
    keep = {root / s.relpath for s in plan}
    for folder in SPLIT_DIRS.values():
        base = root / folder
        if not base.is_dir():
            continue
        for f in base.rglob("*"):
            if f.is_file() and (f.suffix == ".avi" or ".tmp-" in f.name) and f not in keep:
                f.unlink()


def make_demo(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    clips_per_class: int = 8,
    min_seconds: float = 1.0,
    max_seconds: float = 4.0,
    frame_size: int = 160,
    fer_per_class: int = 60,
    no_audio_clips: int = 2,
    face_exit_clips: int = 1,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the demo dataset under ``out_dir`` (layout and design: see :mod:`avfer.demo`).

    Returns a summary: ``root``, ``truth_csv``, ``fer_csv``, ``seed``, ``clips`` (count per
    split), ``fer_images`` (count per Usage), ``no_audio`` and ``face_exit`` (clip ids).
    ``.avi`` files in the split folders that this plan does not contain are deleted first.
    ``workers`` clips are rendered concurrently in threads (default: the CPUs available to
    the process); the output does not depend on it. ``progress`` gets "k/n clips" messages.
    """
    if frame_size < 64 or frame_size % 2:
        raise ValueError(f"frame_size must be even and >= 64, got {frame_size}")
    root = Path(out_dir)
    plan = plan_clips(
        seed=seed,
        clips_per_class=clips_per_class,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        no_audio_clips=no_audio_clips,
        face_exit_clips=face_exit_clips,
    )
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, plan)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with ThreadPoolExecutor(max_workers=max(1, workers or 1)) as pool:
        jobs = [pool.submit(write_clip, s, root, seed=seed, frame_size=frame_size) for s in plan]
        try:
            for done, job in enumerate(jobs, 1):
                job.result()
                if progress and (done % 20 == 0 or done == len(jobs)):
                    progress(f"{done}/{len(jobs)} clips")
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
    fer = fer_rows(seed=seed, per_class=fer_per_class)
    write_text(root / "fer2013.csv", _csv_text(("emotion", "pixels", "Usage"), fer))
    write_text(root / "demo_truth.csv", _csv_text(TRUTH_COLUMNS, truth_rows(plan)))
    return {
        "root": str(root),
        "truth_csv": str(root / "demo_truth.csv"),
        "fer_csv": str(root / "fer2013.csv"),
        "seed": seed,
        "clips": {split: sum(s.split == split for s in plan) for split in SPLIT_DIRS},
        "fer_images": {u: sum(r[2] == u for r in fer) for u in ("Training", "PublicTest", "PrivateTest")},
        "no_audio": sorted(s.clip_id for s in plan if not s.has_audio),
        "face_exit": sorted(s.clip_id for s in plan if s.exit_frames is not None),
    }
