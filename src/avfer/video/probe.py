"""Media probing and the 25 fps frame grid shared by every per-frame stage.

The grid of a clip is a pure function of its container metadata (:func:`probe`), so the
face stage (which decodes frames) and the audio stage (which never decodes video) agree on
the number of frames ``T`` exactly: frame ``t`` spans ``[t / fps, (t + 1) / fps)`` seconds
from the start of the video stream (of the audio stream for an audio-only file).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from avfer.errors import AvferError

GRID_FPS = 25.0


class VideoError(AvferError):
    """A video that cannot be read (missing, empty, corrupt, or without a video stream)."""


class ToolError(AvferError):
    """ffmpeg or ffprobe missing or broken: every clip would fail, so the job stops."""


def check_ffmpeg(tools: tuple[str, ...] = ("ffmpeg", "ffprobe")) -> None:
    """Raise :class:`ToolError` (one line) unless every tool is on ``PATH`` and runs.

    A stage calls this before its first clip, so a broken installation (a missing shared
    library, a wrapper that exits with an error) fails the job instead of failing every clip.
    """
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise ToolError(f"{' and '.join(missing)} not found on PATH (install ffmpeg)")
    for tool in tools:
        try:
            proc = subprocess.run([tool, "-version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ToolError(f"{shutil.which(tool)} does not run ({exc})") from None
        first = (proc.stdout.strip().splitlines() or [""])[0]
        if proc.returncode != 0 or not first.startswith(f"{tool} version"):
            why = (proc.stderr.strip().splitlines() or [first or "no output"])[-1]
            raise ToolError(
                f"{shutil.which(tool)} is broken: '{tool} -version' exited with status "
                f"{proc.returncode} ({why})"
            )


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe says about a clip."""

    path: str
    width: int
    height: int
    fps: float
    duration: float
    start_time: float
    has_audio: bool
    audio_start_time: float = 0.0
    rotation: int = 0
    sar: float = 1.0
    has_video: bool = True
    """False for an audio-only file (see ``probe(require_video=False)``): no frame size or rate,
    and ``duration`` / ``start_time`` are those of the audio stream."""

    @property
    def display_size(self) -> tuple[int, int]:
        """``(width, height)`` of the frames as shown: square pixels, rotation applied."""
        w, h = max(1, round(self.width * self.sar)), self.height
        return (h, w) if self.rotation % 180 == 90 else (w, h)


def _ffprobe(path: Path) -> dict:
    cmd = [
        "ffprobe", "-v", "error", "-of", "json",
        "-show_entries",
        "stream=codec_type,width,height,avg_frame_rate,r_frame_rate,duration,nb_frames,start_time,"
        "sample_aspect_ratio:stream_side_data=rotation:stream_tags=rotate:stream_disposition=attached_pic:"
        "format=duration,start_time",
        str(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["ffprobe failed"])[-1]
        msg = msg.removeprefix(f"{path}: ")  # ffprobe names the file too
        raise VideoError(f"{path}: unreadable video ({msg})")
    return json.loads(proc.stdout or "{}")


def _rate(text: str | None) -> float:
    try:
        value = float(Fraction(text)) if text else 0.0
    except (ValueError, ZeroDivisionError):
        value = 0.0
    return value


def probe(path: str | Path, *, require_video: bool = True) -> VideoInfo:
    """Probe a clip; raise :class:`VideoError` naming the file if it has no usable video stream.

    ``require_video=False`` accepts an audio-only file (a cover image is not a video stream):
    its :class:`VideoInfo` has ``has_video=False`` and the grid spans the audio stream.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: media file does not exist")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: media file is empty (0 bytes)")
    meta = _ffprobe(path)
    streams = meta.get("streams", [])
    video = next((s for s in streams if _is_video(s)), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        if require_video or audio is None:
            raise VideoError(f"{path}: no video stream" + ("" if audio is None else " (audio only)"))
        return _audio_only(path, meta, audio)
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    duration = float(video.get("duration") or 0.0)
    if duration <= 0 and fps > 0 and video.get("nb_frames"):
        duration = int(video["nb_frames"]) / fps
    if duration <= 0:
        duration = float(meta.get("format", {}).get("duration") or 0.0)
    if duration <= 0:
        raise VideoError(f"{path}: video stream has no duration (empty or corrupt)")
    return VideoInfo(
        path=str(path),
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        fps=fps,
        duration=duration,
        start_time=float(video.get("start_time") or 0.0),
        has_audio=audio is not None,
        audio_start_time=float(audio.get("start_time") or 0.0) if audio else 0.0,
        rotation=_rotation(video),
        sar=_rate((video.get("sample_aspect_ratio") or "1:1").replace(":", "/")) or 1.0,
    )


def _is_video(stream: dict) -> bool:
    return stream.get("codec_type") == "video" and not stream.get("disposition", {}).get("attached_pic")


def _audio_only(path: Path, meta: dict, audio: dict) -> VideoInfo:
    duration = float(audio.get("duration") or 0.0) or float(meta.get("format", {}).get("duration") or 0.0)
    if duration <= 0:
        raise VideoError(f"{path}: audio stream has no duration (empty or corrupt)")
    start = float(audio.get("start_time") or 0.0)
    return VideoInfo(
        path=str(path),
        width=0,
        height=0,
        fps=0.0,
        duration=duration,
        start_time=start,
        has_audio=True,
        audio_start_time=start,
        has_video=False,
    )


def _rotation(stream: dict) -> int:
    """Display rotation in degrees (0, 90, 180 or 270) from side data or the legacy tag."""
    value = stream.get("tags", {}).get("rotate", 0)
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            value = side["rotation"]
    try:
        return int(round(float(value) / 90.0)) * 90 % 360
    except (TypeError, ValueError):
        return 0


def grid_length(duration: float, fps: float = GRID_FPS) -> int:
    """Number of frames of the ``fps`` grid for a video stream of ``duration`` seconds."""
    return max(1, int(round(duration * fps)))


def frame_times(n_frames: int, fps: float = GRID_FPS) -> np.ndarray:
    """Start time in seconds (relative to the video stream start) of each grid frame."""
    return np.arange(n_frames, dtype=np.float64) / fps


def scaled_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``size`` shrunk (never enlarged) so that its longest side is at most ``max_side``
    (``0`` = unchanged)."""
    w, h = size
    if max_side <= 0 or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))
