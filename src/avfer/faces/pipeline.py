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
   when it has enough pixels for the crop, else from the full-size frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avfer.faces.align import face_template, similarity_matrices, warp_face
from avfer.faces.detect import Detections, FaceDetector
from avfer.faces.track import KeyState, SubjectTracker, guess_boxes, iou
from avfer.io.failures import DEFAULT_MAX_FAILED
from avfer.video import GRID_FPS, GridDecoder, GridFrames, grid_length, probe

log = logging.getLogger(__name__)

#: Keys of the ``faces`` config section that only size the job (not part of the result).
JOB_KEYS = ("resources",)


@dataclass(frozen=True)
class FaceSettings:
    """The ``faces`` config section (see ``config/schema.yaml`` for meanings and defaults)."""

    crop_size: int
    margin: float
    detect_size: int
    frame_max_side: int
    batch_size: int
    keyframe_every: int
    min_face_size: int
    thresholds: tuple[float, float, float]
    refine_threshold: float
    track_iou: float
    max_gap: int
    center_weight: float
    device: str
    compression: str
    max_failed_fraction: float = DEFAULT_MAX_FAILED

    @classmethod
    def from_config(cls, section: dict[str, Any] | None = None) -> FaceSettings:
        """Validate a ``faces`` section against the schema (filling its defaults)."""
        from avfer.config import validate_config

        cfg = validate_config({"faces": dict(section or {})})["faces"]
        values = {k: v for k, v in cfg.items() if k not in JOB_KEYS}
        values["thresholds"] = tuple(float(x) for x in values["thresholds"])
        return cls(**values)

    def result_config(self) -> dict[str, Any]:
        """The settings that determine the cache's content (hashed into ``config_hash``)."""
        job = ("device", "batch_size", "max_failed_fraction")
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in job}
        out["thresholds"] = list(self.thresholds)
        return out

    def detector(self, device: str | None = None) -> FaceDetector:
        """The MTCNN detector these settings describe."""
        return FaceDetector(
            min_face_size=self.min_face_size,
            thresholds=self.thresholds,
            device=device or self.device,
        )


#: Sink of a clip's output: called with consecutive blocks of grid frames (every dataset of
#: :func:`face_layout`, the same number of rows), e.g. :meth:`avfer.io.ClipWriter.append`.
Sink = Callable[[dict[str, np.ndarray]], None]


@dataclass
class ClipFaces:
    """The face-cache datasets of one clip (empty when they went to a sink) plus counters for
    the log and the summary."""

    data: dict[str, np.ndarray]
    stats: dict[str, Any] = field(default_factory=dict)
    has_video: bool = True

    @property
    def status(self) -> str:
        """``ok`` when the subject was found in at least one frame, else ``no_face``;
        ``no_video`` for an audio-only file (its frames are those of a clip without a face)."""
        if not self.has_video:
            return "no_video"
        return "ok" if int(self.stats.get("faces", 0)) > 0 else "no_face"


def face_layout(crop_size: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Per-frame datasets of a face-cache clip: name → (shape after ``T``, dtype)."""
    return {
        "faces": ((crop_size, crop_size, 3), np.uint8),
        "frame_index": ((), np.int32),
        "timestamp": ((), np.float64),
        "source_time": ((), np.float64),
        "box": ((4,), np.float32),
        "landmarks": ((5, 2), np.float32),
        "prob": ((), np.float32),
        "has_face": ((), bool),
    }


def empty_faces(n: int, crop_size: int, start: int = 0) -> dict[str, np.ndarray]:
    """Datasets of ``n`` grid frames (from grid frame ``start``) without any face."""
    return {
        "faces": np.zeros((n, crop_size, crop_size, 3), np.uint8),
        "frame_index": np.full(n, -1, np.int32),
        "timestamp": np.arange(start, start + n, dtype=np.float64) / GRID_FPS,
        "source_time": np.full(n, np.nan, np.float64),
        "box": np.zeros((n, 4), np.float32),
        "landmarks": np.zeros((n, 5, 2), np.float32),
        "prob": np.zeros(n, np.float32),
        "has_face": np.zeros(n, bool),
    }


class _Collect:
    """A sink that keeps the blocks in memory (:func:`process_clip` without a sink)."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []

    def __call__(self, block: dict[str, np.ndarray]) -> None:
        self.blocks.append(block)

    def data(self, crop_size: int) -> dict[str, np.ndarray]:
        if not self.blocks:
            return empty_faces(0, crop_size)
        return {k: np.concatenate([b[k] for b in self.blocks]) for k in self.blocks[0]}


class _ClipRun:
    """State of one clip being processed chunk by chunk."""

    def __init__(self, dec: GridDecoder, detector: FaceDetector, s: FaceSettings, sink: Sink) -> None:
        self.dec, self.det, self.s, self.sink = dec, detector, s, sink
        self.n = dec.n_frames
        self.written = 0  # grid frames handed to the sink
        self.faces = 0
        self.tracker = SubjectTracker(
            dec.small_size, min_iou=s.track_iou, max_gap=s.max_gap, center_weight=s.center_weight
        )
        self.prev_key: KeyState | None = None
        self.template = face_template(s.crop_size, s.margin)
        self.stats = {"keyframes": 0, "refined": 0, "redetected": 0}

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
        if self.written < self.n:  # grid frames the decoder never delivered: no face
            self.sink(empty_faces(self.n - self.written, self.s.crop_size, self.written))
            self.written = self.n

    def chunk(self, g: GridFrames) -> None:
        """Process consecutive frames ending with a keyframe; hand them to the sink."""
        t, valid, small = g.t, g.valid, g.smalls
        if len(t) and (t[0] < self.written or np.any(np.diff(t) != 1)):
            raise RuntimeError(f"grid frames out of order: {t[0]} after {self.written}")
        if len(t) and t[0] > self.written:  # a gap before this block: frames without a face
            self.sink(empty_faces(int(t[0]) - self.written, self.s.crop_size, self.written))
            self.written = int(t[0])
        o = empty_faces(len(t), self.s.crop_size, self.written)
        o["frame_index"][:] = g.source_index
        o["source_time"][:] = g.source_time

        # 1. full detection on keyframes, main subject by tracking
        key = np.flatnonzero(self.is_key(t) & valid)
        dets = dict(zip(key.tolist(), self.det.detect(small[key]), strict=True))
        self.stats["keyframes"] += len(key)
        states: list[KeyState] = [] if self.prev_key is None else [self.prev_key]
        chosen: dict[int, int] = {}
        for i in np.flatnonzero(self.is_key(t)):
            d = dets.get(int(i))
            j = self.tracker.assign(int(t[i]), d.boxes) if d is not None else None
            if j is not None:
                chosen[int(i)] = j
            states.append(KeyState(int(t[i]), d.boxes[j] if j is not None else None, self.tracker.track))
        self.prev_key = states[-1]

        # 2. predicted boxes for every frame, verified and refined by O-Net
        guess = np.full((len(t), 4), np.nan, np.float32)
        for before, after in zip(states[:-1], states[1:], strict=True):
            between = (t > before.t) & (t < after.t)
            guess[between] = guess_boxes(before, after, t[between])
        for i, j in chosen.items():
            guess[i] = dets[i].boxes[j]
        todo = np.flatnonzero(valid & np.isfinite(guess).all(1))
        x = self.det.to_tensor(small)
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

        # 4. alignment and output (boxes and landmarks in display pixels)
        self.align(g, has, res_lm, o["faces"])
        sx, sy = self.dec.small_to_frame
        dx, dy = self.dec.to_display
        scale = np.float32([sx * dx, sy * dy])
        o["has_face"][:] = has
        o["prob"][:] = np.where(has, res_prob, 0)
        o["box"][:] = np.where(has[:, None], res_box * np.tile(scale, 2), 0)
        o["landmarks"][:] = np.where(has[:, None, None], res_lm * scale, 0)
        self.sink(o)
        self.written += len(t)
        self.faces += int(has.sum())

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

    def align(self, g: GridFrames, has: np.ndarray, lm: np.ndarray, out: np.ndarray) -> None:
        """Aligned crops (into ``out``, one row per frame of ``g``) of the frames with a face
        (landmarks in detection-size pixels)."""
        rows = np.flatnonzero(has)
        mats = similarity_matrices(lm[rows], self.template)
        sx, sy = self.dec.small_to_frame
        to_full = np.diag([1 / sx, 1 / sy, 1.0])  # frame pixels -> detection-size pixels
        for i, m in zip(rows, mats, strict=True):
            if not np.isfinite(m).all():
                has[i] = False
                continue
            # detection-size pixels per crop pixel: enough for the crop → warp the small frame
            if np.sqrt(abs(np.linalg.det(m[:2, :2]))) <= 1.0:
                out[i] = warp_face(g.small(i), m, self.s.crop_size)
            else:
                out[i] = warp_face(g.frame(i), m @ to_full, self.s.crop_size)


def process_clip(
    path: str | Path,
    detector: FaceDetector,
    settings: FaceSettings,
    *,
    decode_threads: int = 0,
    sink: Sink | None = None,
) -> ClipFaces:
    """Faces of one clip on the 25 fps grid; raises :class:`avfer.video.VideoError` (naming the
    file) when the video cannot be read. ``decode_threads``: ffmpeg's (0 = its default).

    With ``sink`` the datasets go to it block by block (of about ``batch_size`` frames: the
    memory of a clip of any length is that of one block) and ``data`` stays empty; without, they
    are collected into ``data``. An audio-only file gives status ``no_video``: the grid of its
    audio stream, no face in any frame (so the audio stage and every reader see the same ``T``)."""
    info = probe(path, require_video=False)
    s = settings
    collect = _Collect() if sink is None else None
    out: Sink = collect if collect is not None else sink  # type: ignore[assignment]
    if not info.has_video:
        n = grid_length(info.duration)
        for start in range(0, n, max(1, s.batch_size)):
            out(empty_faces(min(s.batch_size, n - start), s.crop_size, start))
        stats = {"frames": n, "faces": 0, "source_frames": 0, "missing_frames": n, "duration": info.duration}
        stats |= {"keyframes": 0, "refined": 0, "redetected": 0}
        data = collect.data(s.crop_size) if collect is not None else {}
        return ClipFaces(data, stats, has_video=False)
    dec = GridDecoder(
        path, info, max_side=s.frame_max_side, detect_size=s.detect_size, prefetch=s.batch_size,
        threads=decode_threads,
    )  # fmt: skip
    run = _ClipRun(dec, detector, s, out)
    run.run()
    stats = {
        "frames": dec.n_frames,
        "faces": run.faces,
        "source_frames": dec.decoded,
        "missing_frames": dec.missing,
        "video_fps": round(info.fps, 4),
        "duration": info.duration,
        "width": dec.display_size[0],
        "height": dec.display_size[1],
        **run.stats,
    }
    return ClipFaces(collect.data(s.crop_size) if collect is not None else {}, stats)
