"""Decoding a clip onto the 25 fps grid of :mod:`avfer.video.probe`.

:class:`GridDecoder` decodes a clip onto that grid: exactly ``T`` frames, frame ``t`` being
the source frame on screen at ``t / fps`` seconds after the video stream start (the last
frame whose presentation time is ``<= t / fps``), whatever the source frame rate (constant
or variable). It streams raw RGB frames from one ``ffmpeg`` process (never one image file
per frame), and reads every source frame's real presentation time from ffmpeg's
``showinfo`` filter.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avfer.video.probe import GRID_FPS, VideoError, VideoInfo, grid_length, probe, scaled_size


class GridFrames:
    """Consecutive frames of the 25 fps grid, decoded at two sizes, without copying them.

    ``frame(i)`` / ``frames`` are the frames used for face crops (display size, capped by
    ``max_side``); ``small(i)`` / ``smalls`` the same frames at detection size (the same
    pixels when no downscaling is needed). The stacked arrays ``frames`` and ``smalls`` are
    built on first use; ``frame(i)`` is a view of the decoded buffer. A missing frame (before
    the first / after the last decodable source frame) is black, with ``source_index == -1``
    and ``source_time`` NaN.
    """

    def __init__(
        self,
        t: np.ndarray,
        source_index: np.ndarray,
        source_time: np.ndarray,
        buffers: list[np.ndarray | None],
        frame_hw: tuple[int, int],
        small_hw: tuple[int, int] | None = None,
    ) -> None:
        self.t = t  # int64 [n] grid indices
        self.source_index = source_index  # int32 [n] source frame shown (-1 = missing)
        self.source_time = source_time  # float64 [n] its presentation time (s from stream start)
        self._buffers = buffers  # per frame: frame rows, then small rows (None = missing)
        self._hw = frame_hw
        self._small_hw = small_hw  # None: no separate detection-size copy
        self._stacked: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.t)

    @property
    def valid(self) -> np.ndarray:
        """Frames that show a real decoded source frame."""
        return self.source_index >= 0

    def frame(self, i: int) -> np.ndarray:
        """Crop-size frame ``i``, ``uint8 [H, W, 3]`` (a view, not a copy)."""
        buf, (h, w) = self._buffers[i], self._hw
        return np.zeros((h, w, 3), np.uint8) if buf is None else buf[:h]

    def small(self, i: int) -> np.ndarray:
        """Detection-size frame ``i``, ``uint8 [h, w, 3]`` (a view)."""
        if self._small_hw is None:
            return self.frame(i)
        buf, (h, w) = self._buffers[i], self._small_hw
        return np.zeros((h, w, 3), np.uint8) if buf is None else buf[self._hw[0] :, :w]

    @property
    def frames(self) -> np.ndarray:
        """All crop-size frames, ``uint8 [n, H, W, 3]``."""
        if "frames" not in self._stacked:
            self._stacked["frames"] = np.stack([self.frame(i) for i in range(len(self))])
        return self._stacked["frames"]

    @property
    def smalls(self) -> np.ndarray:
        """All detection-size frames, ``uint8 [n, h, w, 3]``."""
        if self._small_hw is None:
            return self.frames
        if "smalls" not in self._stacked:
            self._stacked["smalls"] = np.stack([self.small(i) for i in range(len(self))])
        return self._stacked["smalls"]

    def __getitem__(self, sl: slice) -> GridFrames:
        arrays = (self.t[sl], self.source_index[sl], self.source_time[sl])
        return GridFrames(*arrays, self._buffers[sl], self._hw, self._small_hw)

    @staticmethod
    def concat(parts: list[GridFrames]) -> GridFrames:
        """One :class:`GridFrames` of consecutive parts."""
        if len(parts) == 1:
            return parts[0]
        arrays = (
            np.concatenate([getattr(p, k) for p in parts]) for k in ("t", "source_index", "source_time")
        )
        return GridFrames(*arrays, [b for p in parts for b in p._buffers], parts[0]._hw, parts[0]._small_hw)


_PTS = re.compile(r"\] n:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)\s+pts_time:\s*(\S+)")
_TIMEBASE = re.compile(r"config in time_base:\s*(\d+)/(\d+)")
_PROBLEM = re.compile(r"error|invalid|unrecognized|not found|corrupt|truncated|partial file", re.I)
_END = object()


class GridDecoder:
    """Decode one clip onto the ``fps`` grid: exactly ``n_frames = grid_length(duration)``
    frames, frame ``t`` being the source frame on screen at ``t / fps`` s from the video
    stream start (the last one whose presentation time is ``<= t / fps``).

    Source frames come from one ``ffmpeg`` process as raw RGB on a pipe (the crop-size frame
    and the detection-size frame stacked in one image), read by a thread so that decoding
    overlaps the caller's work; their real presentation times come from ``showinfo``.
    ``threads``: ffmpeg's decoding threads (0 = its default, one per core).
    Iterate :meth:`batches`. Raises :class:`VideoError` naming the file when nothing decodes.
    """

    def __init__(
        self,
        path: str | Path,
        info: VideoInfo | None = None,
        *,
        max_side: int = 0,
        detect_size: int = 0,
        fps: float = GRID_FPS,
        prefetch: int = 16,
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.threads = threads  # ffmpeg decoding threads (0 = ffmpeg's choice)
        self.info = info or probe(self.path)
        self.fps = fps
        self.n_frames = grid_length(self.info.duration, fps)
        self.display_size = self.info.display_size
        self.frame_size = scaled_size(self.display_size, max_side)
        self.small_size = scaled_size(self.display_size, detect_size)
        if self.small_size[0] > self.frame_size[0]:
            self.small_size = self.frame_size
        self.prefetch = max(2, prefetch)
        self.decoded = 0  # source frames read
        self.missing = 0  # grid frames without a source frame
        self.messages: list[str] = []  # ffmpeg error/warning lines

    @property
    def to_display(self) -> tuple[float, float]:
        """Factors (x, y) from ``frames`` pixel coordinates to display-size coordinates."""
        return (self.display_size[0] / self.frame_size[0], self.display_size[1] / self.frame_size[1])

    @property
    def small_to_frame(self) -> tuple[float, float]:
        """Factors (x, y) from ``small`` pixel coordinates to ``frames`` coordinates."""
        return (self.frame_size[0] / self.small_size[0], self.frame_size[1] / self.small_size[1])

    def _graph(self) -> str:
        # RGB conversion right after the split (padding subsampled YUV needs even sizes); a
        # scale filter only where the size changes (even a no-op scale costs ~40% of decoding).
        (fw, fh), (sw, sh) = self.frame_size, self.small_size
        full = "[0:v:0]"
        if (fw, fh) != (self.info.width, self.info.height) or self.info.sar != 1.0:
            full += f"scale={fw}:{fh}:flags=bicubic,setsar=1"
        else:
            full += "null"
        info = "showinfo=checksum=0[out]"
        if (sw, sh) == (fw, fh):
            return f"{full},format=rgb24,{info}"
        return (
            f"{full},split=2[a][b];[a]format=rgb24[f];"
            f"[b]scale={sw}:{sh}:flags=area,format=rgb24,pad={fw}:{sh}[s];[f][s]vstack=inputs=2,{info}"
        )

    def _command(self, sync: list[str]) -> list[str]:
        return [
            "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", "-copyts",
            "-threads", str(self.threads), "-i", str(self.path), "-filter_complex", self._graph(),
            "-map", "[out]", "-an", "-sn", *sync, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
        ]  # fmt: skip

    def _source_frames(self) -> Iterator[tuple[np.ndarray, int, float]]:
        """Yield ``(stacked frame, source index, time from the stream start)`` in display order."""
        for sync in (["-fps_mode", "passthrough"], ["-vsync", "passthrough"]):  # ffmpeg >= 5.1 | older
            yielded = False
            for item in self._run(sync):
                yielded = True
                yield item
            if yielded or not any("fps_mode" in m for m in self.messages):
                return

    def _run(self, sync: list[str]) -> Iterator[tuple[np.ndarray, int, float]]:
        (fw, fh), (sw, sh) = self.frame_size, self.small_size
        shape = (fh + (sh if (sw, sh) != (fw, fh) else 0), fw, 3)
        frames: queue.Queue = queue.Queue(self.prefetch)
        stamps: queue.Queue = queue.Queue()
        stop = threading.Event()
        self.messages = []
        proc = subprocess.Popen(
            self._command(sync), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        readers = [
            threading.Thread(target=self._read_frames, args=(proc, shape, frames, stop), daemon=True),
            threading.Thread(target=self._read_log, args=(proc, stamps), daemon=True),
        ]
        for th in readers:
            th.start()
        step = 1.0 / (self.info.fps or self.fps)
        last, timed = self.info.start_time - step, True
        try:
            while (frame := frames.get()) is not _END:
                k, pts = self.decoded, None
                if timed:  # showinfo logs a frame before ffmpeg writes it: its line is on the way
                    try:
                        k, pts = stamps.get(timeout=10)
                    except queue.Empty:
                        timed = False
                time = pts if pts is not None else last + step
                last = time
                self.decoded += 1
                yield frame, k, time - self.info.start_time
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for th in readers:
                th.join(timeout=5)

    @staticmethod
    def _read_frames(proc: subprocess.Popen, shape: tuple, out: queue.Queue, stop: threading.Event) -> None:
        size = int(np.prod(shape))
        while not stop.is_set():
            buf = np.empty(shape, np.uint8)
            view, got = memoryview(buf).cast("B"), 0
            while got < size and (n := proc.stdout.readinto(view[got:])):
                got += n
            if got < size:
                break
            while not stop.is_set():
                try:
                    out.put(buf, timeout=0.2)
                    break
                except queue.Full:
                    continue
        while not stop.is_set():
            try:
                out.put(_END, timeout=0.2)
                return
            except queue.Full:
                continue

    def _read_log(self, proc: subprocess.Popen, out: queue.Queue) -> None:
        timebase = None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if (m := _PTS.search(line)) is not None:
                pts = None
                if m.group(2) != "NOPTS":
                    pts = int(m.group(2)) * timebase if timebase else float(m.group(3))
                out.put((int(m.group(1)), pts))
            elif (m := _TIMEBASE.search(line)) is not None and int(m.group(1)):
                timebase = int(m.group(1)) / int(m.group(2))
            elif _PROBLEM.search(line):
                self.messages.append(line.split("] ", 1)[-1])

    def batches(self, batch_size: int = 32) -> Iterator[GridFrames]:
        """Yield the ``n_frames`` grid frames in order, ``batch_size`` at a time."""
        eps, t_max, fps = 1e-4, self.n_frames, self.fps
        late_ok = 1.5 / (self.info.fps or fps)
        pending: list[tuple[np.ndarray | None, int, float]] = []
        cur: tuple[np.ndarray, int, float] | None = None
        times: list[float] = []
        t = 0
        source = self._source_frames()
        try:
            for frame, k, time in source:
                times.append(time)
                while t < t_max and t / fps < time - eps:
                    if cur is not None:
                        pending.append(cur)
                    else:  # before the first source frame: use it if it is barely late
                        late = time - t / fps <= late_ok
                        pending.append((frame, k, time) if late else (None, -1, np.nan))
                    t += 1
                    if len(pending) >= batch_size:
                        yield self._batch(t - len(pending), pending)
                        pending = []
                cur = (frame, k, time)
                if t >= t_max:
                    break
        finally:
            source.close()
        if cur is None:
            why = "; ".join(self.messages[-2:]) or "no frame could be decoded"
            raise VideoError(f"{self.path}: undecodable video ({why})")
        gaps = np.diff(times)
        tail = 1.5 * (float(np.median(gaps)) if len(gaps) and np.median(gaps) > 0 else 1.0 / fps)
        while t < t_max:  # after the last source frame: it stays on screen for about one interval
            pending.append(cur if t / fps - cur[2] < tail else (None, -1, np.nan))
            t += 1
            if len(pending) >= batch_size or t == t_max:
                yield self._batch(t - len(pending), pending)
                pending = []
        if pending:
            yield self._batch(t - len(pending), pending)

    def _batch(self, t0: int, items: list[tuple[np.ndarray | None, int, float]]) -> GridFrames:
        (fw, fh), (sw, sh) = self.frame_size, self.small_size
        index = np.array([k for _, k, _ in items], np.int32)
        self.missing += int((index < 0).sum())
        return GridFrames(
            np.arange(t0, t0 + len(items), dtype=np.int64),
            index,
            np.array([s for _, _, s in items], np.float64),
            [frame for frame, _, _ in items],
            (fh, fw),
            None if (sw, sh) == (fw, fh) else (sh, sw),
        )


def decode_grid(path: str | Path, *, max_side: int = 0, detect_size: int = 0) -> GridFrames:
    """Decode a whole clip onto the 25 fps grid in memory (tests, small clips)."""
    dec = GridDecoder(path, max_side=max_side, detect_size=detect_size)
    return GridFrames.concat(list(dec.batches(1 << 30)))
