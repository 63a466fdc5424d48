"""One input (video, animated GIF, image or array) through a bundle: faces, per-frame emotions,
the per-frame table and the clip summary, optionally the annotated video (drawn and encoded
in a thread beside the frame loop) and the timeline on the way.

Videos go through the face stage itself (:func:`avfer.faces.track_clip`: the 25 fps grid
decoder, MTCNN keyframes and O-Net tracking, up to ``max_faces`` subjects) with the bundle's
face settings and crop geometry, one chunk of frames at a time: each chunk's crops are
classified and drawn while the next is decoded. Images get one MTCNN detection. The clip
label is the bundle's aggregate (mean or median of the frame softmax) over the main subject's
frames, as the pipeline scores a clip; every face track also gets its own label.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from avfer.bundle import Bundle
from avfer.device import resolve_device
from avfer.errors import AvferError
from avfer.faces.align import align_faces, square_box_crop
from avfer.faces.pipeline import ring_frames, track_clip
from avfer.labels import EMOTIONS
from avfer.predict.clip import (
    audio_model,
    clip_scores,
    crop_logits,
    frame_outputs,
    fuse,
    model_summary,
    video_networks,
    video_outputs,
    window_curves,
)
from avfer.predict.draw import FaceMark, draw_overlay
from avfer.predict.spool import FaceSpool
from avfer.predict.tracks import TrackLog
from avfer.predict.writers import preload_timeline, video_writer, write_timeline
from avfer.train.cnn_predict import aggregate_frames
from avfer.video import GRID_FPS, GridFrames, VideoInfo, grid_length, probe, scaled_size

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
FACE_COLUMNS = [f"face_p_{e}" for e in EMOTIONS]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class Prediction(NamedTuple):
    """``frames``: one row per 25 fps grid frame and face (see :func:`frames_table`);
    ``summary``: the clip's status, label and probabilities, per face track too."""

    frames: pd.DataFrame
    summary: dict[str, Any]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def frames_table(
    n: int, faces: list[dict[str, np.ndarray]], curves: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """The per-frame table of ``n`` grid frames from per-subject arrays (``has_face [n]``,
    ``track [n]``, ``box [n, 4]``, ``landmarks [n, 5, 2]``, ``prob [n]``, ``logits [n, 7]``):
    ``frame, time, face_id, x1, y1, x2, y2, det_prob, <landmark>_x/_y, face_p_<Emotion>``;
    a frame without any face has one row with ``face_id = -1`` and empty values. ``curves``
    (``audio`` / ``fused`` → ``[n, 7]``, see :func:`~avfer.predict.clip.window_curves`) add
    ``audio_p_<Emotion>`` / ``fused_p_<Emotion>``, the same on every row of a frame."""
    parts = []
    for f in faces:
        rows = np.flatnonzero(f["has_face"])
        part = {"frame": rows, "face_id": f["track"][rows]}
        part.update(dict(zip(("x1", "y1", "x2", "y2"), f["box"][rows].T, strict=True)))
        part["det_prob"] = f["prob"][rows]
        for k, name in enumerate(LANDMARKS):
            part[f"{name}_x"], part[f"{name}_y"] = f["landmarks"][rows, k, 0], f["landmarks"][rows, k, 1]
        part.update(dict(zip(FACE_COLUMNS, softmax(f["logits"][rows]).T, strict=True)))
        parts.append(pd.DataFrame(part))
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"frame": [], "face_id": []})
    empty = np.setdiff1d(np.arange(n), df["frame"].to_numpy())
    df = pd.concat([df, pd.DataFrame({"frame": empty, "face_id": -1})], ignore_index=True)
    df = df.astype({"frame": np.int64, "face_id": np.int64}).sort_values(["frame", "face_id"], kind="stable")
    df.insert(1, "time", df["frame"] / GRID_FPS)
    cols = ["frame", "time", "face_id", "x1", "y1", "x2", "y2", "det_prob"]
    cols += [f"{n}_{a}" for n in LANDMARKS for a in "xy"] + FACE_COLUMNS
    df = df.reindex(columns=cols).reset_index(drop=True)
    for name, p in (curves or {}).items():
        at = df["frame"].to_numpy()
        df = df.assign(**{f"{name}_p_{e}": p[at, i] for i, e in enumerate(EMOTIONS)})
    return df


def clip_probs(logits: np.ndarray, how: str) -> np.ndarray:
    """Clip probabilities of frame ``logits`` (the bundle's aggregate ``how``)."""
    return aggregate_frames(logits, np.zeros(len(logits), np.int64), 1, how)[0]


def labelled(p: np.ndarray) -> dict[str, Any]:
    """``{"label", "probabilities"}`` of a probability vector."""
    return {
        "label": EMOTIONS[int(np.argmax(p))],
        "probabilities": dict(zip(EMOTIONS, map(float, p), strict=True)),
    }


def summarize(
    path: str, kind: str, n: int, faces: list[dict[str, np.ndarray]], bundle: Bundle
) -> dict[str, Any]:
    """The clip summary: status, label and probabilities of the main subject (slot 0), and per
    face track (id, frames, first/last time, label, probabilities)."""
    main = faces[0] if faces else None
    found = int(main["has_face"].sum()) if main is not None else 0
    out: dict[str, Any] = {"input": path, "kind": kind, "status": "ok" if found else "no_face", "error": ""}
    out.update({"model": bundle.name, "frames": n, "fps": GRID_FPS, "face_frames": found})
    out.update({"label": None, "probabilities": None})
    if found:
        out.update(labelled(clip_probs(main["logits"][main["has_face"]], bundle.aggregate)))
    else:
        out["error"] = f"{path}: no face found"
    tracks = []
    for f in faces:
        for k in np.unique(f["track"][f["has_face"]]):
            rows = np.flatnonzero(f["has_face"] & (f["track"] == k))
            t0, t1 = rows[0] / GRID_FPS, rows[-1] / GRID_FPS
            entry = {"face_id": int(k), "frames": len(rows), "start": t0, "end": t1}
            tracks.append(entry | labelled(clip_probs(f["logits"][rows], bundle.aggregate)))
    out["tracks"] = sorted(tracks, key=lambda e: e["face_id"])
    return out


def failed_summary(path: str, kind: str, error: str, bundle: Bundle) -> dict[str, Any]:
    """The summary of an input that could not be read."""
    return {
        "input": path,
        "kind": kind,
        "status": "failed",
        "error": error,
        "model": bundle.name,
        "tracks": [],
    }


class Predictor:
    """A bundle ready to predict: its detector and face model on ``device``.

    ``max_faces``: subjects tracked per video (faces per image); ``batch_size``: faces per
    forward pass of the face model; ``curve_window``: seconds of the sliding window of the
    per-frame audio and fused curves (bundles with clip models).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: str = "auto",
        max_faces: int = 3,
        batch_size: int = 256,
        curve_window: float = 2.0,
    ) -> None:
        self.bundle = bundle
        self.device = resolve_device(device)
        self.settings = bundle.face_settings
        self.detector = self.settings.detector(str(self.device))
        self.model = bundle.face_model.to(self.device).eval()
        self.max_faces, self.batch_size = max(1, max_faces), batch_size
        self.curve_window = max(1, round(curve_window * GRID_FPS))  # frames

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Logits ``[n, 7]`` of ``uint8 [n, h, w, 3]`` face crops (the face model's)."""
        return crop_logits(self.model, crops, self.batch_size)

    def video(
        self,
        path: str | Path,
        *,
        annotated: str | Path | None = None,
        timeline: str | Path | None = None,
        progress: Any = None,
        title: str | None = None,
    ) -> Prediction:
        """Predict a video file; ``annotated``: also write the annotated mp4 there, ``timeline``
        the timeline plot (matplotlib imported during the frame loop, the plot drawn while the
        last frames are encoded; ``title``: its title, default the file's name); ``progress``: a
        tqdm-like bar (``total`` set here, ``update`` per chunk)."""
        if timeline is not None:
            preload_timeline()
        info = probe(path, require_video=False)
        if not info.has_video and audio_model(self.bundle) is None:
            raise AvferError(
                f"{path}: no video stream (an audio-only file needs a bundle with an audio model)"
            )
        if not info.has_video:
            annotated = None  # nothing to draw on
        size = info.display_size if info.has_video else (1, 1)
        frame_size = scaled_size(size, self.settings.frame_max_side)
        to_frame = np.float32([frame_size[0] / size[0], frame_size[1] / size[1]] * 2)
        # the writer queues a chunk, so that drawing and encoding it overlap the next chunk's faces
        queue_frames = self.settings.batch_size
        window = ring_frames(self.settings)
        spool = FaceSpool(self.bundle.crop.size, window) if video_networks(self.bundle) else None
        with (
            _maybe_writer(annotated, frame_size, info, queue_frames) as writer,
            spool or contextlib.nullcontext(),
        ):

            def each_chunk(g: GridFrames, subjects: list[Any], logits: list[np.ndarray]) -> None:
                if progress is not None and g.t[0] == 0:
                    progress.reset(total=grid_length(info.duration))
                if writer is not None:
                    for i, t in enumerate(g.t):
                        slot = t % window
                        marks = [
                            FaceMark(s.out["box"][slot] * to_frame, int(s.track[slot]), softmax(lg[i]))
                            for s, lg in zip(subjects, logits, strict=True)
                            if s.out["has_face"][slot]
                        ]
                        writer.draw(draw_overlay, g.frame(i), marks)  # drawn in the writer's thread
                if progress is not None:
                    progress.update(len(g))

            log = TrackLog(
                window, self.classify, main=frame_outputs(self.bundle), each_chunk=each_chunk, spool=spool
            )
            clips = track_clip(
                path,
                self.detector,
                self.settings,
                max_faces=self.max_faces,
                crop=self.bundle.crop,
                on_chunk=log,
                window=window,
            )
            n = int(clips[0].stats["frames"])
            fixed = video_outputs(self.bundle, spool.finish(n)) if spool is not None else {}
            pred = self._clip_prediction(path, info, n, log.subjects(n, self.max_faces), fixed)
            if timeline is not None:
                write_timeline(timeline, pred.frames, title=title or Path(path).name)
        return pred

    def _clip_prediction(
        self,
        path: str | Path,
        info: VideoInfo,
        n: int,
        faces: list[dict[str, np.ndarray]],
        fixed: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> Prediction:
        """The per-frame table and clip summary of a video's ``n`` grid frames and tracked
        ``faces`` (per subject, main first: :meth:`TrackLog.subjects`); ``fixed``: the video
        networks' clip outputs (:func:`~avfer.predict.clip.video_outputs`)."""
        summary = summarize(str(path), "video", n, faces, self.bundle)
        summary.update({"duration": info.duration, "has_audio": info.has_audio})
        if not info.has_video:
            summary["status"], summary["error"] = "no_video", f"{path}: no video stream"
        face = faces[0]
        scores, logits, audio_status, arrays = clip_scores(self.bundle, path, face, fixed)
        summary["audio_status"] = audio_status if info.has_audio else "no_audio"
        if self.bundle.models:
            fused = fuse(self.bundle, scores, logits)
            summary.update(model_summary(self.bundle, scores, fused))
            best = fused if fused is not None else scores[next(reversed(self.bundle.models))]
            summary.update(labelled(best))  # the clip label: the bundle's fusion (or its last model)
            if summary["status"] in ("no_face", "no_video") and audio_status == "ok":
                summary["status"], summary["error"] = "ok", ""  # the audio models still give a label
        curves = window_curves(self.bundle, arrays, face, window=self.curve_window, fixed=fixed)
        return Prediction(frames_table(n, faces, curves), summary)

    def image(self, image: np.ndarray, name: str = "<array>") -> tuple[Prediction, list[FaceMark]]:
        """Predict one ``uint8 [H, W, 3]`` RGB image → the prediction and the faces to draw."""
        from PIL import Image

        h, w = image.shape[:2]
        small_size = scaled_size((w, h), self.settings.detect_size)
        small = (
            np.asarray(Image.fromarray(image).resize(small_size, Image.Resampling.BOX))
            if small_size != (w, h)
            else image
        )
        det = self.detector.detect([small])[0]
        order = np.argsort(-(det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1]))
        order = order[det.probs[order] >= self.settings.refine_threshold][: self.max_faces]
        sx, sy = w / small_size[0], h / small_size[1]
        boxes = det.boxes[order] * np.float32([sx, sy, sx, sy])
        lms = det.landmarks[order] * np.float32([sx, sy])
        crop = self.bundle.crop
        if crop.mode == "box_square":
            crops = [
                square_box_crop(image, b, crop.size, crop.pad, scale=crop.box_scale, shift=crop.box_shift)
                for b in boxes
            ]
            ok = np.array([c is not None for c in crops], bool)
            faces_arr = np.stack([c for c in crops if c is not None]) if ok.any() else None
        else:
            faces_arr, ok = align_faces([image] * len(lms), lms, crop.size, crop.margin)
            faces_arr = faces_arr[ok]
        m = int(ok.sum())
        faces = []
        marks = []
        if m:
            lg = self.classify(faces_arr)
            for k, (b, lm, p, logit) in enumerate(
                zip(boxes[ok], lms[ok], det.probs[order][ok], lg, strict=True)
            ):
                faces.append({
                    "has_face": np.ones(1, bool), "track": np.full(1, k + 1, np.int32), "box": b[None],
                    "landmarks": lm[None], "prob": np.float32([p]), "logits": logit[None],
                })  # fmt: skip
                marks.append(FaceMark(b, k + 1, softmax(logit)))
        summary = summarize(name, "image", 1, faces, self.bundle)
        summary["faces"] = m
        return Prediction(frames_table(1, faces), summary), marks


class _NoWriter:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _maybe_writer(path: str | Path | None, size: tuple[int, int], info: Any, queue_frames: int) -> Any:
    if path is None:
        return _NoWriter()
    return video_writer(path, size, audio_from=info, queue_frames=queue_frames)


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``uint8 [H, W, 3]`` RGB (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise AvferError(f"{path}: file does not exist")
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise AvferError(f"{path}: unreadable image ({exc})") from None
