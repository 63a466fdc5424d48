"""Settings of the face stage (the ``faces`` config section)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avfer.faces.detect import FaceDetector
from avfer.io.failures import DEFAULT_MAX_FAILED

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
