"""What ``avfer predict`` writes per input, each file atomically: the per-frame table
(``<name>.frames.csv``), the clip summary (``<name>.json``), the annotated video (``<name>.annotated.mp4``,
the original audio muxed back in) or image, and the timeline (``<name>.timeline.png``)."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avfer.errors import AvferError
from avfer.io.atomic import atomic_path, write_json
from avfer.labels import EMOTIONS
from avfer.video import GRID_FPS, VideoInfo


def write_frames_csv(path: str | Path, frames: pd.DataFrame) -> None:
    """The per-frame table as CSV (floats with 6 significant digits)."""
    with atomic_path(path) as tmp:
        frames.to_csv(tmp, index=False, float_format="%.6g")


def write_summary(path: str | Path, summary: dict[str, Any]) -> None:
    """The clip summary as JSON."""
    write_json(path, summary)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """An ``uint8 [H, W, 3]`` image (format from the file extension)."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(
            tmp, format="PNG" if path.suffix.lower() == ".png" else "JPEG", quality=92
        )


#: A queued frame: (None, (frame,)) or (draw function, its arguments).
_Item = tuple[Callable[..., np.ndarray] | None, tuple[Any, ...]]


class VideoWriter:
    """Annotated frames → H.264 mp4 through one ``ffmpeg`` process (raw RGB on a pipe), with the
    audio of ``audio_from`` (when it has any) muxed back in, aligned to the video start.
    Made by :func:`video_writer`; :meth:`write` one ``uint8 [H, W, 3]`` frame at a time, or
    :meth:`draw` one to be drawn in the writer's thread.

    Frames reach ffmpeg from a thread through a queue of at most ``queue_frames``, so that the
    caller's loop runs on while ffmpeg encodes (a chunk of frames written at once does not wait
    for the encoder); a frame made by :meth:`draw` is drawn in that thread too."""

    def __init__(
        self,
        target: Path,
        tmp: Path,
        size: tuple[int, int],
        fps: float,
        audio: VideoInfo | None,
        queue_frames: int = 32,
    ) -> None:
        self.path, self.size, self.frames = target, size, 0
        w, h = size
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "pipe:0"]
        if audio is not None and audio.has_audio:
            offset = audio.audio_start_time - audio.start_time
            cmd += ["-itsoffset", f"{offset:.6f}", "-i", audio.path, "-map", "0:v", "-map", "1:a:0"]
            cmd += ["-c:a", "aac", "-b:a", "128k", "-shortest"]
        if w % 2 or h % 2:  # yuv420p needs even sizes (on even ones the filter would only copy)
            cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        cmd += ["-c:v", "libx264", "-preset", "ultrafast"]
        cmd += ["-crf", "23", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max(1, queue_frames))
        self._failed = False  # ffmpeg stopped, a frame failed, or the file is abandoned
        self._exc: BaseException | None = None  # what a frame's draw function raised
        self._thread = threading.Thread(target=self._pump, name="avfer-video-writer", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._failed:
                continue
            make, args = item
            try:
                frame = args[0] if make is None else np.ascontiguousarray(self._sized(make(*args)), np.uint8)
            except BaseException as exc:  # raised again in the caller's thread
                self._exc, self._failed = exc, True
                continue
            try:
                self.proc.stdin.write(memoryview(frame).cast("B"))  # type: ignore[union-attr]
            except (BrokenPipeError, ValueError):
                self._failed = True

    def _sized(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape[1::-1] != tuple(self.size):
            raise ValueError(f"frame size {frame.shape[1::-1]} != writer size {self.size}")
        return frame

    def _raise_failed(self) -> None:
        if self._exc is not None:
            raise self._exc
        if self._failed:
            raise AvferError(f"{self.path}: ffmpeg stopped ({self._error()})")

    def write(self, frame: np.ndarray) -> None:
        """Queue a copy of ``frame`` for the encoder."""
        frame = np.array(self._sized(frame), np.uint8, order="C")
        self._raise_failed()
        self._queue.put((None, (frame,)))
        self.frames += 1

    def draw(self, make: Callable[..., np.ndarray], *args: Any) -> None:
        """Queue the frame ``make(*args)``, drawn in the writer's thread (``args`` are held, not
        copied, until then: do not modify them); what ``make`` raises is raised again by the
        next :meth:`write`, :meth:`draw` or :meth:`close`."""
        self._raise_failed()
        self._queue.put((make, args))
        self.frames += 1

    def _error(self) -> str:
        err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        return (err.splitlines() or ["no message"])[-1]

    def close(self, ok: bool = True) -> None:
        """Finish the file (``ok``) or abandon it; raises when ffmpeg or a frame failed."""
        if not ok:
            self._failed = True
        self._queue.put(None)
        self._thread.join()
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        if not ok or self._exc is not None:
            self.proc.kill()
        code = self.proc.wait()
        if not ok:
            return
        if self._exc is not None:
            raise self._exc
        if code != 0:
            raise AvferError(f"{self.path}: ffmpeg failed to write the annotated video ({self._error()})")


@contextlib.contextmanager
def video_writer(
    path: str | Path,
    size: tuple[int, int],
    *,
    fps: float = GRID_FPS,
    audio_from: VideoInfo | None = None,
    queue_frames: int = 32,
) -> Iterator[VideoWriter]:
    """A :class:`VideoWriter` to ``path`` (``size`` = (width, height)); the file appears
    (renamed atomically) only when the block ends without an error."""
    with atomic_path(path) as tmp:
        writer = VideoWriter(Path(path), tmp, size, fps, audio_from, queue_frames)
        try:
            yield writer
        except BaseException:
            writer.close(ok=False)
            raise
        writer.close()


_pyplot_import: threading.Thread | None = None


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _import_pyplot() -> None:
    with contextlib.suppress(Exception):  # write_timeline imports it again and reports a failure
        _pyplot()


def preload_timeline() -> None:
    """Start importing matplotlib (about a second) in a background thread, so that it overlaps
    the frame loop instead of delaying :func:`write_timeline`; once per process."""
    global _pyplot_import
    if _pyplot_import is None and "matplotlib.pyplot" not in sys.modules:
        _pyplot_import = threading.Thread(target=_import_pyplot, name="avfer-matplotlib", daemon=True)
        _pyplot_import.start()


def write_timeline(path: str | Path, frames: pd.DataFrame, title: str = "", max_tracks: int = 4) -> None:
    """Per-emotion probability over time, one panel per face track (the longest
    ``max_tracks``), plus the audio and fused curves when the table has them."""
    if _pyplot_import is not None:
        _pyplot_import.join()  # a half-done import in the other thread would be seen here
    plt = _pyplot()

    faces = frames[frames["face_id"] >= 0]
    tracks = faces["face_id"].value_counts().index[:max_tracks].sort_values().tolist()
    panels = [(f"face #{k}", faces[faces["face_id"] == k], "face_p_") for k in tracks]
    for prefix, name in (("audio_p_", "audio"), ("fused_p_", "fused")):
        if f"{prefix}{EMOTIONS[0]}" in frames:
            panels.append((name, frames.drop_duplicates("frame"), prefix))
    if not panels:
        panels = [("no face found", frames.iloc[:0], "face_p_")]
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, 1.9 * len(panels) + 0.8), sharex=True, squeeze=False
    )
    t_max = float(frames["time"].max()) + 1 / GRID_FPS if len(frames) else 1.0
    for ax, (name, df, prefix) in zip(axes[:, 0], panels, strict=True):
        grid = pd.DataFrame({"frame": np.arange(int(frames["frame"].max()) + 1 if len(frames) else 0)})
        df = grid.merge(df, on="frame", how="left")  # gaps (no face) break the curves
        for i, e in enumerate(EMOTIONS):
            col = f"{prefix}{e}"
            if col in df:
                ax.plot(df["frame"] / GRID_FPS, df[col], color=cmap(i), lw=1.2, label=e)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, t_max)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(
        ncol=len(EMOTIONS), fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False
    )
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10, y=0.995)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=100)
    plt.close(fig)
