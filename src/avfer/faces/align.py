"""5-point face alignment: a similarity transform onto the ArcFace template, then a warp.

The template is insightface's ArcFace 112x112 five-point template (left eye, right eye, nose,
left and right mouth corners as seen in the image), scaled to ``crop_size`` and shrunk around
the crop centre by ``1 / (1 + margin)`` (``margin=0.25`` shows 25 % more context per side
length). Every frame's transform is estimated with
:class:`skimage.transform.SimilarityTransform` (rotation, uniform scale, translation: no
shearing of the face). The warp samples only the region of interest of each frame with
``torch.nn.functional.grid_sample`` (bilinear), after an integer area-downscale of that region
when the face is much larger than the crop, which avoids aliasing; black outside the frame.

Coordinates are continuous pixel coordinates (pixel ``i`` spans ``[i, i + 1)``).
"""

from __future__ import annotations

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
