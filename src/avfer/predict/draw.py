"""The overlay drawn on annotated frames (videos, images, the live window): per face its box
and track id, the top emotion with its probability, and one bar per emotion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colour(track: int) -> tuple[int, int, int]:
    """The drawing colour of a track id."""
    return TRACK_COLOURS[(max(track, 1) - 1) % len(TRACK_COLOURS)]


def draw_overlay(frame: np.ndarray, faces: Sequence[FaceMark], status: str = "") -> np.ndarray:
    """A copy of the ``uint8 [H, W, 3]`` frame with ``faces`` drawn, ``status`` (e.g. fps) top left."""
    img = Image.fromarray(np.ascontiguousarray(frame))
    d = ImageDraw.Draw(img)
    h, w = frame.shape[:2]
    fs = max(10, round(min(h, w) / 30))
    font = _font(fs)
    line = max(2, round(min(h, w) / 240))
    for face in faces:
        x1, y1, x2, y2 = (float(v) for v in face.box)
        c = colour(face.track)
        d.rectangle([x1, y1, x2, y2], outline=c, width=line)
        text = f"#{face.track}"
        if face.probs is not None:
            k = int(np.argmax(face.probs))
            text += f" {EMOTIONS[k]} {face.probs[k]:.2f}"
        ty = y1 - fs - 2 * line if y1 - fs - 2 * line >= 0 else y2 + line
        tw = d.textlength(text, font=font)
        d.rectangle([x1, ty, x1 + tw + 2 * line, ty + fs + line], fill=c)
        d.text((x1 + line, ty), text, fill=(0, 0, 0), font=font)
        if face.probs is not None:
            _bars(d, face.probs, (x1, y1, x2, y2), (w, h), c, max(8, fs * 2 // 3))
    if status:
        d.text(
            (line * 2, line * 2), status, fill=(255, 255, 0), font=font, stroke_width=2, stroke_fill=(0, 0, 0)
        )
    return np.asarray(img)


def _bars(
    d: ImageDraw.ImageDraw,
    probs: np.ndarray,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    c: tuple[int, int, int],
    fs: int,
) -> None:
    """One bar per emotion beside the box (right of it, or left when there is no room)."""
    font = _font(fs)
    label_w = max(d.textlength(e, font=font) for e in EMOTIONS) + 4
    bar_w = 4 * fs
    x1, y1, x2, _ = box
    x0 = x2 + 6 if x2 + 6 + label_w + bar_w <= size[0] else max(0.0, x1 - 6 - label_w - bar_w)
    y = max(0.0, min(y1, size[1] - len(EMOTIONS) * (fs + 3)))
    d.rectangle([x0 - 2, y - 2, x0 + label_w + bar_w + 2, y + len(EMOTIONS) * (fs + 3)], fill=(0, 0, 0))
    for e, p in zip(EMOTIONS, probs, strict=True):
        d.text((x0, y), e, fill=(255, 255, 255), font=font)
        bx = x0 + label_w
        d.rectangle([bx, y + 2, bx + bar_w, y + fs], outline=(90, 90, 90))
        d.rectangle([bx, y + 2, bx + bar_w * float(p), y + fs], fill=c)
        y += fs + 3
