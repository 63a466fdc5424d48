"""Live mode: ``avfer predict --webcam [N | URL | FILE]``.

:class:`CaptureSource` reads an OpenCV capture (a webcam index, a stream URL, or a video file
played at its own frame rate, which is how the tests drive it) in a thread that keeps only the
newest frame, so frames that arrive while the previous ones are processed are dropped and the
overlay keeps up with the camera. The frames go through the face stage's own steps
(:func:`avfer.faces.track_stream`: MTCNN keyframes, O-Net tracking, several subjects) a few
at a time; each is classified, drawn with the fps, and shown in a window when a display exists
(``q`` or Esc quits) and/or written to ``live.annotated.mp4``; ``live.frames.csv`` gets the
per-frame table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avfer.errors import AvferError
from avfer.faces.pipeline import track_stream
from avfer.predict.draw import FaceMark, draw_overlay
from avfer.predict.runner import Predictor, frames_table, softmax
from avfer.predict.writers import video_writer, write_frames_csv
from avfer.video import GridFrames, scaled_size

WINDOW = "avfer predict"


class StopLive(Exception):
    """The user closed the live window."""


class CaptureSource:
    """An OpenCV capture as a frame source of :func:`avfer.faces.track_stream` (see the module
    docstring). ``max_frames``: stop after that many processed frames (0 = until the end)."""

    def __init__(
        self, source: int | str, *, detect_size: int, frame_max_side: int, max_frames: int = 0
    ) -> None:
        import cv2

        self.cv2, self.source = cv2, source
        self.cap = cv2.VideoCapture(source)
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            raise AvferError(f"{source}: cannot open the capture (no camera, stream or readable video)")
        self.is_file = isinstance(source, str) and Path(source).is_file()
        self.src_fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0) or 25.0
        h, w = first.shape[:2]
        self.display_size = (w, h)
        self.frame_size = scaled_size((w, h), frame_max_side)
        self.small_size = scaled_size((w, h), detect_size)
        self.n_frames = max_frames or 1 << 62
        self.dropped = 0
        self._latest: tuple[int, np.ndarray] | None = (0, first)
        self._ended = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def to_display(self) -> tuple[float, float]:
        return (self.display_size[0] / self.frame_size[0], self.display_size[1] / self.frame_size[1])

    @property
    def small_to_frame(self) -> tuple[float, float]:
        return (self.frame_size[0] / self.small_size[0], self.frame_size[1] / self.small_size[1])

    def _read(self) -> None:
        seq, start = 0, time.perf_counter()
        while not self._stop.is_set():
            ok, frame = self.cap.read()
            if not ok:
                break
            seq += 1
            if self.is_file:  # a file plays at its own rate, as a camera would deliver it
                time.sleep(max(0.0, start + seq / self.src_fps - time.perf_counter()))
            with self._cond:
                self._latest = (seq, frame)
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _next(self, last: int) -> tuple[int, np.ndarray] | None:
        """The newest frame after ``last`` (waiting for it), ``None`` at the end of the stream."""
        with self._cond:
            while (self._latest is None or self._latest[0] <= last) and not self._ended:
                self._cond.wait(0.5)
            if self._latest is None or self._latest[0] <= last:
                return None
            return self._latest

    def _buffer(self, bgr: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        (fw, fh), (sw, sh) = self.frame_size, self.small_size
        frame = (
            rgb if (fw, fh) == self.display_size else cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_AREA)
        )
        if (sw, sh) == (fw, fh):
            return frame
        buf = np.zeros((fh + sh, fw, 3), np.uint8)
        buf[:fh] = frame
        buf[fh:, :sw] = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        return buf

    def batches(self, batch_size: int) -> Iterator[GridFrames]:
        """``batch_size`` newest frames at a time (frames in between are dropped and counted)."""
        t, last = 0, -1
        (fw, fh), (sw, sh) = self.frame_size, self.small_size
        small_hw = None if (sw, sh) == (fw, fh) else (sh, sw)
        while t < self.n_frames:
            bufs, seqs, times = [], [], []
            while len(bufs) < min(batch_size, self.n_frames - t):
                item = self._next(last)
                if item is None:
                    break
                seq, frame = item
                self.dropped += seq - last - 1 if last >= 0 else 0
                last = seq
                bufs.append(self._buffer(frame))
                seqs.append(seq)
                times.append(time.perf_counter())
            if not bufs:
                return
            n = len(bufs)
            yield GridFrames(
                np.arange(t, t + n), np.array(seqs, np.int32), np.array(times), bufs, (fh, fw), small_hw
            )
            t += n
            if n < batch_size:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.cap.release()


def has_display() -> bool:
    """Whether a window can be shown (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_live(
    predictor: Predictor,
    source: int | str,
    out_dir: str | Path | None,
    *,
    window: bool | None = None,
    max_frames: int = 0,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """Predict a live capture until it ends, ``max_frames`` are processed, or the window is
    closed. ``window``: show one (default: when a display exists); ``out_dir``: also write
    ``live.annotated.mp4`` and ``live.frames.csv`` there (required without a window);
    ``on_frame(i, image)`` is called with each annotated frame once it is shown."""
    window = has_display() if window is None else window
    if not window and out_dir is None:
        raise AvferError("live mode without a display needs --out to write the annotated stream")
    s = predictor.settings
    settings = dataclasses.replace(s, batch_size=s.keyframe_every)  # one keyframe per chunk: low latency
    src = CaptureSource(
        source, detect_size=s.detect_size, frame_max_side=s.frame_max_side, max_frames=max_frames
    )
    out = Path(out_dir) if out_dir is not None else None
    tables: list[pd.DataFrame] = []
    clock = {"t0": time.perf_counter(), "frames": 0, "fps": 0.0}
    ring = 4 * settings.keyframe_every
    cv2 = src.cv2
    if window:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    scale = np.float32([1 / src.to_display[0], 1 / src.to_display[1]] * 2)

    writer: Any = None

    def on_chunk(g: GridFrames, subjects: list[Any]) -> None:
        rows = g.t % ring
        faces = []
        for subj in subjects:
            f = {k: subj.out[k][rows] for k in ("has_face", "box", "landmarks", "prob")}
            f["track"], f["logits"] = subj.track[rows], np.full((len(g), 7), np.nan, np.float32)
            if f["has_face"].any():
                f["logits"][f["has_face"]] = predictor.classify(subj.out["faces"][rows[f["has_face"]]])
            faces.append(f)
        table = frames_table(len(g), faces)
        table["frame"] += int(g.t[0])
        table["time"] = g.source_time[table["frame"].to_numpy() - int(g.t[0])] - clock["t0"]
        tables.append(table)
        for i in range(len(g)):
            clock["frames"] += 1
            elapsed = time.perf_counter() - clock["t0"]
            clock["fps"] = clock["frames"] / max(elapsed, 1e-9)
            marks = [
                FaceMark(f["box"][i] * scale, int(f["track"][i]), softmax(f["logits"][i]))
                for f in faces
                if f["has_face"][i]
            ]
            image = draw_overlay(g.frame(i), marks, f"{clock['fps']:.1f} fps, {src.dropped} dropped")
            if writer is not None:
                writer.write(image)
            if window:
                cv2.imshow(WINDOW, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    raise StopLive
            if on_frame is not None:
                on_frame(clock["frames"] - 1, image)

    stopped = "end of stream"
    with contextlib.ExitStack() as stack:
        writer = (
            stack.enter_context(video_writer(out / "live.annotated.mp4", src.frame_size, fps=src.src_fps))
            if out
            else None
        )
        try:
            stats = track_stream(
                src, predictor.detector, settings, on_chunk=on_chunk, window=ring,
                max_faces=predictor.max_faces, crop=predictor.bundle.crop,
            )  # fmt: skip
        except (StopLive, KeyboardInterrupt):
            stats, stopped = {}, "stopped by the user"
        finally:
            src.close()
            if window:
                cv2.destroyWindow(WINDOW)
    if out is not None and tables:
        write_frames_csv(out / "live.frames.csv", pd.concat(tables, ignore_index=True))
    return {
        "frames": clock["frames"],
        "fps": round(clock["fps"], 2),
        "dropped": src.dropped,
        "stopped": stopped,
        **stats,
    }
