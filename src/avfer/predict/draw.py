"""The overlay drawn on annotated frames (videos, images, the live window): per face its box
and track id, the top emotion with its probability, and one bar per emotion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from avfer.labels import EMOTIONS

#: One colour per track id (cycled), RGB.
TRACK_COLOURS = (
    (46, 204, 113),
    (52, 152, 219),
    (231, 76, 60),
    (241, 196, 15),
    (155, 89, 182),
    (26, 188, 156),
)


@dataclass
class FaceMark:
    """What is drawn for one face: ``box`` (x1, y1, x2, y2) in the frame's pixels, its track
    id and its class probabilities (``None``: not classified)."""

    box: Sequence[float]
    track: int
    probs: np.ndarray | None = None


FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_size(text: str, fs: int) -> tuple[int, float, int]:
    """(width in pixels, OpenCV font scale, stroke) of ``text`` drawn ``fs`` pixels high."""
    scale = fs / 25.0  # FONT_HERSHEY_SIMPLEX at scale 1: about 22 px cap height, 25 with ascenders
    thick = max(1, round(fs / 12))
    (tw, _), _ = cv2.getTextSize(text, FONT, scale, thick)
    return tw, scale, thick


def _text(img: np.ndarray, xy: tuple[float, float], text: str, fs: int, fill: tuple[int, int, int]) -> None:
    """``text`` with its top left at ``xy``, ``fs`` pixels high."""
    _, scale, thick = _text_size(text, fs)
    org = (round(xy[0]), round(xy[1] + fs))
    cv2.putText(img, text, org, FONT, scale, fill, thick, cv2.LINE_AA)


def _rect(img: np.ndarray, box: Sequence[float], c: tuple[int, int, int], width: int = -1) -> None:
    """A rectangle (``width`` < 0: filled) on integer pixels."""
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), c, width)


def colour(track: int) -> tuple[int, int, int]:
    """The drawing colour of a track id."""
    return TRACK_COLOURS[(max(track, 1) - 1) % len(TRACK_COLOURS)]


def draw_overlay(frame: np.ndarray, faces: Sequence[FaceMark], status: str = "") -> np.ndarray:
    """A copy of the ``uint8 [H, W, 3]`` frame with ``faces`` drawn, ``status`` (e.g. fps) top left."""
    img = np.array(frame, np.uint8, copy=True, order="C")
    h, w = frame.shape[:2]
    fs = max(10, round(min(h, w) / 30))
    line = max(2, round(min(h, w) / 240))
    for face in faces:
        x1, y1, x2, y2 = (float(v) for v in face.box)
        c = colour(face.track)
        _rect(img, (x1, y1, x2, y2), c, line)
        text = f"#{face.track}"
        if face.probs is not None:
            k = int(np.argmax(face.probs))
            text += f" {EMOTIONS[k]} {face.probs[k]:.2f}"
        ty = y1 - fs - 2 * line if y1 - fs - 2 * line >= 0 else y2 + line
        tw = _text_size(text, fs)[0]
        _rect(img, (x1, ty, x1 + tw + 2 * line, ty + fs + 2 * line), c)
        _text(img, (x1 + line, ty + line // 2), text, fs, (0, 0, 0))
        if face.probs is not None:
            _bars(img, face.probs, (x1, y1, x2, y2), (w, h), c, max(8, fs * 2 // 3))
    if status:
        _, scale, thick = _text_size(status, fs)
        org = (line * 2, line * 2 + fs)
        cv2.putText(img, status, org, FONT, scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
        cv2.putText(img, status, org, FONT, scale, (255, 255, 0), thick, cv2.LINE_AA)
    return img


def _bars(
    img: np.ndarray,
    probs: np.ndarray,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    c: tuple[int, int, int],
    fs: int,
) -> None:
    """One bar per emotion beside the box (right of it, or left when there is no room)."""
    label_w = max(_text_size(e, fs)[0] for e in EMOTIONS) + 4
    bar_w = 4 * fs
    x1, y1, x2, _ = box
    x0 = x2 + 6 if x2 + 6 + label_w + bar_w <= size[0] else max(0.0, x1 - 6 - label_w - bar_w)
    y = max(0.0, min(y1, size[1] - len(EMOTIONS) * (fs + 3)))
    _rect(img, (x0 - 2, y - 2, x0 + label_w + bar_w + 2, y + len(EMOTIONS) * (fs + 3)), (0, 0, 0))
    for e, p in zip(EMOTIONS, probs, strict=True):
        _text(img, (x0, y), e, fs, (255, 255, 255))
        bx = x0 + label_w
        _rect(img, (bx, y + 2, bx + bar_w, y + fs), (90, 90, 90), 1)
        if p > 0:
            _rect(img, (bx, y + 2, bx + bar_w * float(p), y + fs), c)
        y += fs + 3
