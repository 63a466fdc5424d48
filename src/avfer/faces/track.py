"""Keep one face, the main subject, across a clip: selection, IoU tracking, box interpolation.

Full detection runs on keyframes only. :class:`SubjectTracker` picks the main subject at the
first keyframe with faces (the largest face, mildly favouring the centre of the image) and
then follows it from keyframe to keyframe by IoU, so a clip gets the same person in every
frame instead of whichever face is largest in each frame. When the subject is missing it is
waited for ``max_gap`` frames (other faces are ignored meanwhile) before a new main subject
is chosen (a shot change, the subject leaving for good). :func:`guess_boxes` predicts the
subject's box on the frames between two keyframes, for O-Net to verify and refine.
Several subjects: one tracker each, sharing a keyframe's faces through :func:`assign_subjects`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``(x1, y1, x2, y2)`` box with each of ``boxes``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    box = np.asarray(box, np.float64)
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def select_main(boxes: np.ndarray, image_size: tuple[int, int], center_weight: float = 0.25) -> int:
    """Index of the main subject among ``boxes``: the largest face, minus a penalty for
    its distance from the image centre (both relative to the image diagonal)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = image_size
    diag = float(np.hypot(w, h))
    size = np.sqrt(np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 0, None))
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = np.hypot(centre[:, 0] - w / 2, centre[:, 1] - h / 2)
    return int(np.argmax(size / diag - center_weight * dist / diag))


@dataclass
class KeyState:
    """The main subject at one keyframe: its box (``None`` = not found) and track id."""

    t: int
    box: np.ndarray | None
    track: int = 0


class SubjectTracker:
    """Follow the main subject from keyframe to keyframe (see the module docstring).

    ``ids``: where new track ids come from (shared by the trackers of :func:`assign_subjects`
    so that every subject of a clip gets its own id); default ``1, 2, 3, ...``.
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        *,
        min_iou: float = 0.3,
        max_gap: int = 25,
        center_weight: float = 0.25,
        ids: Iterator[int] | None = None,
    ) -> None:
        self.image_size = image_size
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.center_weight = center_weight
        self.box: np.ndarray | None = None
        self.last_seen = -(10**9)
        self.track = 0  # a new id whenever a new main subject is chosen
        self._ids = ids if ids is not None else itertools.count(1)

    def match(self, t: int, boxes: np.ndarray, free: np.ndarray | None = None) -> int | None:
        """Index of the followed subject among ``boxes`` (only ``free`` ones) by IoU, or ``None``."""
        boxes = np.asarray(boxes).reshape(-1, 4)
        if self.box is None or len(boxes) == 0:
            return None
        overlap = iou(self.box, boxes)
        if free is not None:
            overlap = np.where(free, overlap, -1.0)
        j = int(np.argmax(overlap))
        if overlap[j] >= self.min_iou:
            self.box, self.last_seen = boxes[j].astype(np.float32), t
            return j
        return None

    def choose(self, t: int, boxes: np.ndarray, free: np.ndarray | None = None) -> int | None:
        """A new main subject among the ``free`` ``boxes`` unless the current one is only
        missing for now (at most ``max_gap`` frames); its index or ``None``."""
        boxes = np.asarray(boxes).reshape(-1, 4)
        free = np.ones(len(boxes), bool) if free is None else np.asarray(free, bool)
        if not free.any() or (self.box is not None and t - self.last_seen <= self.max_gap):
            return None  # nothing to choose, or the subject is missing: do not jump to another face
        cand = np.flatnonzero(free)
        j = int(cand[select_main(boxes[cand], self.image_size, self.center_weight)])
        self.box, self.last_seen = boxes[j].astype(np.float32), t
        self.track = next(self._ids)
        return j

    def assign(self, t: int, boxes: np.ndarray) -> int | None:
        """Index of the main subject among the faces ``boxes`` found at keyframe ``t``, or
        ``None`` when it is not among them."""
        j = self.match(t, boxes)
        return j if j is not None else self.choose(t, boxes)


def assign_subjects(trackers: list[SubjectTracker], t: int, boxes: np.ndarray) -> list[int | None]:
    """One face per tracker (or ``None``) among the faces ``boxes`` of keyframe ``t``: first
    every tracker keeps its subject (IoU, in tracker order), then trackers without a subject
    choose among the faces left, so a face never belongs to two trackers."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    free = np.ones(len(boxes), bool)
    out: list[int | None] = []
    for tr in trackers:
        j = tr.match(t, boxes, free)
        if j is not None:
            free[j] = False
        out.append(j)
    for k, tr in enumerate(trackers):
        if out[k] is None and (j := tr.choose(t, boxes, free)) is not None:
            free[j] = False
            out[k] = j
    return out


def guess_boxes(before: KeyState | None, after: KeyState | None, ts: np.ndarray) -> np.ndarray:
    """Predicted subject boxes ``[len(ts), 4]`` (NaN = no guess) for frames strictly between
    two keyframes: linear interpolation when both show the same track, else the box of the
    one that shows the subject (the nearer one when they show different tracks)."""
    ts = np.asarray(ts, np.float64)
    out = np.full((len(ts), 4), np.nan, np.float32)
    b = before if before is not None and before.box is not None else None
    a = after if after is not None and after.box is not None else None
    if b is not None and a is not None and b.track == a.track and a.t > b.t:
        w = ((ts - b.t) / (a.t - b.t))[:, None]
        out[:] = (1 - w) * b.box[None] + w * a.box[None]
    elif b is not None and a is not None:
        near_b = (ts - b.t) <= (a.t - ts)
        out[near_b], out[~near_b] = b.box, a.box
    elif b is not None:
        out[:] = b.box
    elif a is not None:
        out[:] = a.box
    return out
