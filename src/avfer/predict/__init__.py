"""Emotions of any video, image or array from a model bundle (default: the shipped FER2013
mini-Xception): ``avfer predict`` on the command line, :func:`predict` in Python.

>>> frames, summary = avfer.predict("clip.mp4")          # doctest: +SKIP
>>> summary["label"], frames.filter(like="face_p_").mean()  # doctest: +SKIP

:mod:`avfer.predict.runner` runs one input, :mod:`avfer.predict.writers` writes the per-frame
table, clip summary, annotated video and timeline, :mod:`avfer.predict.files` handles a list of
inputs, :mod:`avfer.predict.draw` draws the overlay.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

from avfer.bundle import Bundle, load_bundle
from avfer.errors import AvferError
from avfer.predict.files import predict_files
from avfer.predict.runner import IMAGE_SUFFIXES, Prediction, Predictor, read_image
from avfer.video import GRID_FPS

__all__ = ["Prediction", "Predictor", "predict", "predict_files"]


def predict(
    source: str | Path | np.ndarray,
    model: str | Path | Bundle | Predictor | None = None,
    *,
    device: str = "auto",
    max_faces: int = 3,
) -> Prediction:
    """Predict a video or image file, an ``uint8 [H, W, 3]`` RGB image or ``[T, H, W, 3]`` frames
    (taken as 25 fps) → ``(frames, summary)``: the per-frame table (one row per grid frame and
    face, ``face_p_<Emotion>`` columns; ``audio_p_`` / ``fused_p_`` when the bundle has audio
    models / a late fusion) as a DataFrame and the clip summary dict.

    ``model``: a bundle folder, a loaded :class:`~avfer.bundle.Bundle` or a :class:`Predictor`
    (reuse one for many calls); ``None`` = the shipped FER2013 model.
    """
    if isinstance(model, Predictor):
        predictor = model
    else:
        bundle = model if isinstance(model, Bundle) else load_bundle(model)
        predictor = Predictor(bundle, device=device, max_faces=max_faces)
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (3, 4) or source.shape[-1] != 3:
            raise AvferError(
                f"expected uint8 [H, W, 3] or [T, H, W, 3] RGB, got {source.dtype} {source.shape}"
            )
        if source.ndim == 3:
            return predictor.image(source)[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "frames.mp4"
            _encode(source, path)
            pred = predictor.video(path)
        pred.summary["input"] = "<array>"
        return pred
    path = Path(source)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return predictor.image(read_image(path), str(path))[0]
    return predictor.video(path)


def _encode(frames: np.ndarray, path: Path) -> None:
    """Frames → a near-lossless 25 fps H.264 file (the video path's input)."""
    t, h, w, _ = frames.shape
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{w}x{h}", "-r", f"{GRID_FPS:g}", "-i", "pipe:0", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "10", "-pix_fmt", "yuv444p", str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), check=True)


class _CallableModule(types.ModuleType):
    """Lets ``avfer.predict(...)`` call :func:`predict` while ``avfer.predict`` stays the package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Prediction:
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
