"""MTCNN face detection (facenet-pytorch) and the O-Net "refine" step used for tracking.

:class:`FaceDetector` wraps ``facenet_pytorch.MTCNN``: :meth:`~FaceDetector.detect` runs the
full three-stage cascade (P-Net pyramid, R-Net, O-Net) on whole frames, batched on a GPU and
frame by frame on a CPU (measured faster there); :meth:`~FaceDetector.refine` runs only the
last stage (O-Net) on one given box per frame: a face probability, a regressed box and five
landmarks for the cost of one 48x48 CNN pass. Between keyframes the face stage predicts
each frame's box and lets O-Net verify and refine it instead of re-running the cascade.

Coordinates are continuous pixel coordinates of the image passed in (pixel ``i`` spans
``[i, i + 1)``), boxes ``(x1, y1, x2, y2)``, landmarks ``(x, y)`` in MTCNN's order: left eye,
right eye, nose, left mouth corner, right mouth corner (left/right as seen in the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import roi_align

from avfer.device import resolve_device


@dataclass
class Detections:
    """The faces found in one image (``n`` may be 0)."""

    boxes: np.ndarray  # float32 [n, 4]
    probs: np.ndarray  # float32 [n]
    landmarks: np.ndarray  # float32 [n, 5, 2]

    def __len__(self) -> int:
        return len(self.boxes)


def _empty() -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


def square(boxes: np.ndarray) -> np.ndarray:
    """Squares with the same centres and side ``max(w, h)`` (MTCNN's ``rerec``)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None] / 2
    return np.concatenate([c - half, c + half], axis=1)


class FaceDetector:
    """facenet-pytorch MTCNN on ``device``: full detection and O-Net refinement.

    ``min_face_size`` and ``thresholds`` (P-, R-, O-Net) are MTCNN's, in pixels of the images
    given to :meth:`detect`. ``batched``: run :meth:`detect` on a whole batch at once
    (default: on CUDA only; on a CPU the frame-by-frame loop is faster).
    """

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        device: str | torch.device | None = "auto",
        batched: bool | None = None,
    ) -> None:
        from facenet_pytorch import MTCNN

        self.device = resolve_device(device, key="faces.device")
        self.mtcnn = MTCNN(
            min_face_size=int(min_face_size),
            thresholds=[float(t) for t in thresholds],
            factor=float(factor),
            keep_all=True,
            select_largest=False,
            device=self.device,
        )
        self.mtcnn.eval()
        self.batched = self.device.type == "cuda" if batched is None else bool(batched)

    def detect(self, images: np.ndarray | Sequence[np.ndarray]) -> list[Detections]:
        """All faces in each ``uint8 [h, w, 3]`` RGB image (a batch of equal-size images)."""
        if len(images) == 0:
            return []
        if self.batched:
            batch = np.ascontiguousarray(
                np.stack(list(images)) if not isinstance(images, np.ndarray) else images
            )
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            return [self._pack(b, p, q) for b, p, q in zip(boxes, probs, points, strict=True)]
        out = []
        for img in images:
            b, p, q = self.mtcnn.detect(np.ascontiguousarray(img), landmarks=True)
            out.append(self._pack(b, p, q))
        return out

    @staticmethod
    def _pack(boxes: object, probs: object, points: object) -> Detections:
        if boxes is None or len(boxes) == 0:  # type: ignore[arg-type]
            return _empty()
        # MTCNN boxes are 1-based inclusive (its crops start at x1 - 1): make them continuous.
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) - np.float32([1, 1, 0, 0])
        return Detections(
            boxes,
            np.asarray(probs, dtype=np.float32).reshape(-1),
            np.asarray(points, dtype=np.float32).reshape(-1, 5, 2),
        )

    def to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """``uint8 [n, h, w, 3]`` → ``float32 [n, 3, h, w]`` (0-255) on the detector's device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2).contiguous().float()  # NCHW: roi_align is 3x slower on NHWC

    @torch.no_grad()
    def refine(
        self, images: torch.Tensor, boxes: np.ndarray, image_index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net on one box per row: ``(prob [m], refined box [m, 4], landmarks [m, 5, 2])``.

        ``images``: :meth:`to_tensor` output; ``boxes``: ``[m, 4]`` in its pixel coordinates,
        box ``i`` looked for in image ``image_index[i]`` (default ``i``). The crop is the
        square around each box, resampled to 48x48 by area averaging (``roi_align``); pixels
        outside the image read as black, as in the original MTCNN.
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        m = len(boxes)
        if m == 0:
            return np.zeros(0, np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32)
        idx = np.arange(m) if image_index is None else np.asarray(image_index)
        sq = square(boxes)
        rois = torch.from_numpy(np.concatenate([idx[:, None].astype(np.float32), sq], axis=1))
        crops = roi_align(
            images, rois.to(images.device), output_size=(48, 48), sampling_ratio=0, aligned=True
        )
        reg, points, score = self.mtcnn.onet((crops - 127.5) * 0.0078125)
        reg, points, prob = reg.cpu().numpy(), points.cpu().numpy(), score[:, 1].cpu().numpy()
        side = (sq[:, 2] - sq[:, 0])[:, None]
        refined = sq + reg * np.concatenate([side, side, side, side], axis=1)
        lm = np.stack([sq[:, :1] + side * points[:, :5], sq[:, 1:2] + side * points[:, 5:]], axis=2)
        return prob.astype(np.float32), refined.astype(np.float32), lm.astype(np.float32)
