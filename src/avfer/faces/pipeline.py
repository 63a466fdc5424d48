"""One clip through the face stage: 25 fps frames → main-subject faces → aligned crops.

Per chunk of ``batch_size`` grid frames (decoded by :class:`avfer.video.GridDecoder` at two
sizes, the detection copy downscaled by ffmpeg):

1. **keyframes** (every ``keyframe_every``-th grid frame and the last one): full MTCNN on the
   detection-size frame; :class:`~avfer.faces.track.SubjectTracker` keeps the main subject;
2. **every frame**: the subject's box is predicted (the keyframe's box, or interpolated
   between the two surrounding keyframes) and O-Net alone verifies and refines it, giving
   the box, five landmarks and a probability for about 1/30 of a detection's cost. The same
   step on keyframes makes all frames' landmarks come from one procedure (less jitter);
3. frames O-Net rejects (fast motion, occlusion) get a full detection, matched by IoU to
   the prediction; frames still without the subject are recorded with ``has_face = False``;
4. **alignment**: 5-point similarity onto the template, warped from the detection-size frame
   when it has enough pixels for the crop, else from the full-size frame (or, with a
   ``box_square`` :class:`~avfer.faces.align.FaceCrop`, the square detection box plus padding,
   as FER2013-style models were trained).

:func:`track_clip` follows up to ``max_faces`` subjects at once (one tracker each, sharing the
keyframe detections); :func:`process_clip` is its one-subject case, the face cache's content,
optionally streamed block by block to a sink (a clip of any length in the memory of one block);
:func:`track_stream` runs the same steps on a live capture.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from avfer.faces.align import FaceCrop, face_template, similarity_matrices, square_box_crop, warp_face
from avfer.faces.detect import Detections, FaceDetector
from avfer.faces.layout import ClipFaces, Sink, empty_faces, face_layout
from avfer.faces.settings import JOB_KEYS, FaceSettings
from avfer.faces.track import KeyState, SubjectTracker, assign_subjects, guess_boxes, iou
from avfer.video import GRID_FPS, GridDecoder, GridFrames, grid_length, probe

log = logging.getLogger(__name__)

__all__ = [
    "JOB_KEYS", "ClipFaces", "FaceSettings", "Sink", "empty_faces", "face_layout",
    "process_clip", "track_clip", "track_stream",
]  # fmt: skip


class _Subject:
    """One tracked face of a clip: its tracker, last keyframe state and output arrays."""

    def __init__(self, tracker: SubjectTracker, n: int, crop_size: int) -> None:
        self.tracker = tracker
        self.prev_key: KeyState | None = None
        self.out = empty_faces(n, crop_size)
        self.track = np.full(n, -1, np.int32)  # track id per frame (-1: no face)


class _ClipRun:
    """State of one clip being processed chunk by chunk (``max_faces`` subjects).

    ``window``: keep only the last ``window`` frames in the subjects' arrays (a ring indexed by
    ``t % window``; for endless streams, consumed chunk by chunk through ``on_chunk``).
    """

    def __init__(
        self,
        dec: GridDecoder,
        detector: FaceDetector,
        s: FaceSettings,
        *,
        max_faces: int = 1,
        crop: FaceCrop | None = None,
        on_chunk: Callable[[GridFrames, list[_Subject]], None] | None = None,
        window: int | None = None,
    ) -> None:
        self.dec, self.det, self.s = dec, detector, s
        self.n = dec.n_frames
        self.window = window  # None: arrays hold the whole clip; else a ring of `window` frames
        self.crop = crop or FaceCrop("template", s.crop_size, s.margin)
        ids = itertools.count(1)
        track = {"min_iou": s.track_iou, "max_gap": s.max_gap, "center_weight": s.center_weight, "ids": ids}
        self.subjects = [
            _Subject(SubjectTracker(dec.small_size, **track), window or self.n, self.crop.size)
            for _ in range(max(1, max_faces))
        ]
        self.out = self.subjects[0].out
        self.on_chunk = on_chunk
        self.template = face_template(self.crop.size, self.crop.margin)
        self.stats = {"keyframes": 0, "refined": 0, "redetected": 0}

    def slot(self, t: Any) -> Any:
        """Row of grid frame(s) ``t`` in the subjects' arrays."""
        return t if self.window is None else t % self.window

    def is_key(self, t: np.ndarray) -> np.ndarray:
        return (t % self.s.keyframe_every == 0) | (t == self.n - 1)

    def run(self) -> None:
        k = self.s.keyframe_every
        pending: list[GridFrames] = []
        for batch in self.dec.batches(max(k, self.s.batch_size // k * k)):
            parts = [*pending, batch]
            keys = np.flatnonzero(self.is_key(batch.t))
            if len(keys) == 0:
                pending = parts
                continue
            cut = keys[-1] + 1
            self.chunk(GridFrames.concat([*pending, batch[:cut]]))
            pending = [batch[cut:]] if cut < len(batch) else []
        if pending:  # cannot happen (the last grid frame is a keyframe); kept for safety
            self.chunk(GridFrames.concat(pending))

    def chunk(self, g: GridFrames) -> None:
        """Process consecutive frames ending with a keyframe."""
        t, valid, small = g.t, g.valid, g.smalls
        for subj in self.subjects:
            subj.out["frame_index"][self.slot(t)] = g.source_index
            subj.out["source_time"][self.slot(t)] = g.source_time

        # 1. full detection on keyframes, main subject(s) by tracking
        key = np.flatnonzero(self.is_key(t) & valid)
        dets = dict(zip(key.tolist(), self.det.detect(small[key]), strict=True))
        self.stats["keyframes"] += len(key)
        trackers = [subj.tracker for subj in self.subjects]
        states: list[list[KeyState]] = [[] if p.prev_key is None else [p.prev_key] for p in self.subjects]
        chosen: list[dict[int, int]] = [{} for _ in self.subjects]
        for i in np.flatnonzero(self.is_key(t)):
            d = dets.get(int(i))
            js = assign_subjects(trackers, int(t[i]), d.boxes) if d is not None else [None] * len(trackers)
            for k, j in enumerate(js):
                if j is not None:
                    chosen[k][int(i)] = j
                box = d.boxes[j] if d is not None and j is not None else None
                states[k].append(KeyState(int(t[i]), box, trackers[k].track))
        x = self.det.to_tensor(small)
        for subj, st, ch in zip(self.subjects, states, chosen, strict=True):
            subj.prev_key = st[-1]
            self.follow(g, subj, st, ch, dets, x)
        if self.on_chunk is not None:
            self.on_chunk(g, self.subjects)

    def follow(
        self,
        g: GridFrames,
        subj: _Subject,
        states: list[KeyState],
        chosen: dict[int, int],
        dets: dict[int, Detections],
        x: Any,
    ) -> None:
        """Steps 2-4 for one subject over the frames of a chunk."""
        t, valid, small = g.t, g.valid, g.smalls
        # 2. predicted boxes for every frame, verified and refined by O-Net
        guess = np.full((len(t), 4), np.nan, np.float32)
        track = np.full(len(t), -1, np.int32)
        for before, after in zip(states[:-1], states[1:], strict=True):
            between = (t > before.t) & (t < after.t)
            guess[between] = guess_boxes(before, after, t[between])
            near = np.where(t[between] - before.t <= after.t - t[between], before.track, after.track)
            if before.box is None or after.box is None:
                near[:] = before.track if before.box is not None else after.track
            track[between] = near
        for st in states:
            track[t == st.t] = st.track
        for i, j in chosen.items():
            guess[i] = dets[i].boxes[j]
        todo = np.flatnonzero(valid & np.isfinite(guess).all(1))
        prob, box, lm = self.det.refine(x, guess[todo], todo)
        good = prob >= self.s.refine_threshold
        self.stats["refined"] += int(good.sum())
        res_prob = np.zeros(len(t), np.float32)
        res_box = np.zeros((len(t), 4), np.float32)
        res_lm = np.zeros((len(t), 5, 2), np.float32)
        has = np.zeros(len(t), bool)
        res_prob[todo[good]], res_box[todo[good]], res_lm[todo[good]] = prob[good], box[good], lm[good]
        has[todo[good]] = True

        # 3. keyframes O-Net rejects keep the cascade's output; other rejects are re-detected
        retry = []
        for i in todo[~good]:
            if int(i) in chosen:
                d, j = dets[int(i)], chosen[int(i)]
                res_prob[i], res_box[i], res_lm[i], has[i] = d.probs[j], d.boxes[j], d.landmarks[j], True
            else:
                retry.append(int(i))
        if retry:
            self.redetect(np.array(retry), small[retry], guess, x, (res_prob, res_box, res_lm, has))

        # 4. crops and output (boxes and landmarks in display pixels)
        self.align(g, subj.out, has, res_lm, res_box)
        sx, sy = self.dec.small_to_frame
        dx, dy = self.dec.to_display
        scale = np.float32([sx * dx, sy * dy])
        o = subj.out
        o["has_face"][self.slot(t)] = has
        o["prob"][self.slot(t)] = np.where(has, res_prob, 0)
        o["box"][self.slot(t)] = np.where(has[:, None], res_box * np.tile(scale, 2), 0)
        o["landmarks"][self.slot(t)] = np.where(has[:, None, None], res_lm * scale, 0)
        subj.track[self.slot(t)] = np.where(has, track, -1)

    def redetect(self, idx: np.ndarray, images: np.ndarray, guess: np.ndarray, x: Any, res: tuple) -> None:
        """Full detection on frames whose predicted box O-Net rejected."""
        res_prob, res_box, res_lm, has = res
        self.stats["redetected"] += len(idx)
        found: list[tuple[int, Detections, int]] = []
        for i, d in zip(idx, self.det.detect(images), strict=True):
            if len(d):
                overlap = iou(guess[i], d.boxes)
                if overlap.max() >= self.s.track_iou:
                    found.append((int(i), d, int(overlap.argmax())))
        if not found:
            return
        rows = np.array([i for i, _, _ in found])
        prob, box, lm = self.det.refine(x, np.stack([d.boxes[j] for _, d, j in found]), rows)
        for n, (i, d, j) in enumerate(found):
            if prob[n] >= self.s.refine_threshold:
                res_prob[i], res_box[i], res_lm[i] = prob[n], box[n], lm[n]
            else:
                res_prob[i], res_box[i], res_lm[i] = d.probs[j], d.boxes[j], d.landmarks[j]
            has[i] = True

    def align(self, g: GridFrames, out: dict, has: np.ndarray, lm: np.ndarray, box: np.ndarray) -> None:
        """Face crops of the frames with a face (landmarks and boxes in detection-size pixels):
        template alignment, or square boxes cut from the crop-size frame (``self.crop``)."""
        rows = np.flatnonzero(has)
        sx, sy = self.dec.small_to_frame
        if self.crop.mode == "box_square":
            pad = self.crop.pad / self.dec.to_display[0]  # display pixels -> frame pixels
            for i in rows:
                face = square_box_crop(
                    g.frame(i), box[i] * np.float32([sx, sy, sx, sy]), self.crop.size, pad,
                    scale=self.crop.box_scale, shift=self.crop.box_shift,
                )  # fmt: skip
                if face is None:
                    has[i] = False
                else:
                    out["faces"][self.slot(g.t[i])] = face
            return
        mats = similarity_matrices(lm[rows], self.template)
        to_full = np.diag([1 / sx, 1 / sy, 1.0])  # frame pixels -> detection-size pixels
        for i, m in zip(rows, mats, strict=True):
            if not np.isfinite(m).all():
                has[i] = False
                continue
            # detection-size pixels per crop pixel: enough for the crop → warp the small frame
            if np.sqrt(abs(np.linalg.det(m[:2, :2]))) <= 1.0:
                out["faces"][self.slot(g.t[i])] = warp_face(g.small(i), m, self.crop.size)
            else:
                out["faces"][self.slot(g.t[i])] = warp_face(g.frame(i), m @ to_full, self.crop.size)


def track_clip(
    path: str | Path,
    detector: FaceDetector,
    settings: FaceSettings,
    *,
    max_faces: int = 1,
    crop: FaceCrop | None = None,
    on_chunk: Callable[[GridFrames, list[_Subject]], None] | None = None,
    window: int | None = None,
    decode_threads: int = 0,
) -> list[ClipFaces]:
    """Faces of up to ``max_faces`` subjects of one clip on the 25 fps grid, the main subject
    first (each :class:`ClipFaces` has a ``track`` id per frame, ``-1`` without a face).

    ``crop``: how faces are cut out (default: the settings' template alignment); ``on_chunk``
    is called with each processed chunk of frames and the subjects (for streaming consumers);
    with ``window`` the subjects' arrays are a ring of that many frames (rows ``t % window``,
    which only ``on_chunk`` can read; an audio-only file then gives no rows).

    Raises :class:`avfer.video.VideoError` (naming the file) when the video cannot be read. An
    audio-only file gives one subject with status ``no_video``: the grid of its audio stream, no
    face in any frame (so the audio stage and every reader see the same ``T``).
    """
    info = probe(path, require_video=False)
    s = settings
    if not info.has_video:
        n = grid_length(info.duration)
        stats = {"frames": n, "faces": 0, "source_frames": 0, "missing_frames": n, "duration": info.duration}
        stats |= {"keyframes": 0, "refined": 0, "redetected": 0}
        rows = n if window is None else 0
        track = np.full(rows, -1, np.int32)
        return [ClipFaces(empty_faces(rows, s.crop_size), stats, has_video=False, track=track)]
    dec = GridDecoder(
        path, info, max_side=s.frame_max_side, detect_size=s.detect_size, prefetch=s.batch_size,
        threads=decode_threads,
    )  # fmt: skip
    run = _ClipRun(dec, detector, s, max_faces=max_faces, crop=crop, on_chunk=on_chunk, window=window)
    run.run()
    stats = {
        "frames": dec.n_frames,
        "source_frames": dec.decoded,
        "missing_frames": dec.missing,
        "video_fps": round(info.fps, 4),
        "duration": info.duration,
        "width": dec.display_size[0],
        "height": dec.display_size[1],
        **run.stats,
    }
    return [
        ClipFaces(subj.out, {"faces": int(subj.out["has_face"].sum()), **stats}, track=subj.track)
        for subj in run.subjects
    ]


def track_stream(
    source: Any,
    detector: FaceDetector,
    settings: FaceSettings,
    *,
    on_chunk: Callable[[GridFrames, list[_Subject]], None],
    window: int,
    max_faces: int = 1,
    crop: FaceCrop | None = None,
) -> dict[str, int]:
    """:func:`track_clip` on an endless frame source (a live capture), keeping only the last
    ``window`` frames (ring rows ``t % window``); results reach ``on_chunk`` chunk by chunk.
    ``source`` offers :class:`~avfer.video.GridDecoder`'s interface (``batches``, ``n_frames``,
    ``small_size``, ``small_to_frame``, ``to_display``). Returns the detection counters."""
    run = _ClipRun(
        source, detector, settings, max_faces=max_faces, crop=crop, on_chunk=on_chunk, window=window
    )
    run.run()
    return run.stats


class _Blocks:
    """``on_chunk`` of a streamed :func:`process_clip`: copies each chunk of the main subject
    out of the ring and hands it to the sink, frames in order, gaps as frames without a face."""

    def __init__(self, sink: Sink, crop_size: int, window: int) -> None:
        self.sink, self.crop_size, self.window = sink, crop_size, window
        self.written = 0  # grid frames handed to the sink
        self.faces = 0

    def __call__(self, g: GridFrames, subjects: list[_Subject]) -> None:
        t = g.t
        if not len(t):
            return
        if t[0] < self.written or np.any(np.diff(t) != 1):
            raise RuntimeError(f"grid frames out of order: {t[0]} after {self.written}")
        self.finish(int(t[0]))
        block = {k: v[t % self.window] for k, v in subjects[0].out.items()}  # copies
        block["timestamp"] = t / GRID_FPS
        block["faces"][~block["has_face"]] = 0
        self.sink(block)
        self.written += len(t)
        self.faces += int(block["has_face"].sum())

    def finish(self, n: int, step: int = 256) -> None:
        """Frames ``written .. n`` without a face (a gap, a tail, an audio-only file)."""
        while self.written < n:
            k = min(step, n - self.written)
            self.sink(empty_faces(k, self.crop_size, self.written))
            self.written += k


def ring_frames(settings: FaceSettings) -> int:
    """Frames of a ring (``track_clip(window=...)``) longer than any chunk of ``_ClipRun.run``."""
    k = settings.keyframe_every
    return 2 * (max(k, settings.batch_size // k * k) + k)


def process_clip(
    path: str | Path,
    detector: FaceDetector,
    settings: FaceSettings,
    *,
    decode_threads: int = 0,
    sink: Sink | None = None,
) -> ClipFaces:
    """Faces of the main subject of one clip on the 25 fps grid (the face cache's content);
    raises :class:`avfer.video.VideoError` (naming the file) when the video cannot be read.
    ``decode_threads``: ffmpeg's (0 = its default). An audio-only file: status ``no_video``.

    With ``sink`` the datasets go to it block by block (about ``batch_size`` frames: the memory
    of a clip of any length is that of one block) and ``data`` stays empty."""
    if sink is None:
        return track_clip(path, detector, settings, decode_threads=decode_threads)[0]
    window = ring_frames(settings)
    blocks = _Blocks(sink, settings.crop_size, window)
    clip = track_clip(
        path, detector, settings, on_chunk=blocks, window=window, decode_threads=decode_threads
    )[0]
    blocks.finish(int(clip.stats["frames"]))
    return ClipFaces({}, {**clip.stats, "faces": blocks.faces}, has_video=clip.has_video)
