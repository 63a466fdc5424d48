"""A face classifier = input pipeline (:class:`~avfer.data.transforms.FaceTransform`) + backbone,
and its checkpoint file ``model.pt``.

The model takes uint8 face crops ``[N, H, W, C]`` of any size (the aligned 112 px crops of the
face cache, FER2013's 48 px grey images, ...), so everything downstream (prediction, feature
extraction) needs only the checkpoint. ``model.pt`` is a plain dict (loadable with
``torch.load(..., weights_only=True)``): ``format``, ``backbone``, ``classes``, ``input_size``,
``in_chans``, ``normalization``, ``augment``, ``feature_layer``, ``feature_map_size``, ``tta``,
``feature_dim``, ``state_dict`` and ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avfer.data.transforms import FaceTransform
from avfer.errors import AvferError
from avfer.io.atomic import atomic_path
from avfer.labels import EMOTIONS, NUM_CLASSES
from avfer.models.backbones import build_backbone

MODEL_FORMAT = "avfer-face-cnn/1"
TTA_MODES = ("none", "flip")


class FaceModel(nn.Module):
    """uint8 faces → logits (``forward``) or features of ``feature_layer`` (``forward_features``)."""

    def __init__(
        self,
        backbone: str,
        *,
        input_size: int = 48,
        in_chans: int = 1,
        augment: str = "standard",
        normalization: str = "symmetric",
        pretrained_path: str | Path | None = None,
        num_classes: int = NUM_CLASSES,
        pretrained: str = "none",
        feature_layer: str = "penultimate",
        feature_map_size: int | None = None,
        tta: str = "none",
    ) -> None:
        super().__init__()
        if tta not in TTA_MODES:
            raise AvferError(f"face model tta {tta!r} is not one of {', '.join(TTA_MODES)}")
        self.spec = {
            "backbone": backbone,
            "input_size": int(input_size),
            "in_chans": int(in_chans),
            "augment": augment,
            "normalization": normalization,
            "feature_layer": feature_layer,
            "feature_map_size": feature_map_size,
            "tta": tta,
        }
        self.transform = FaceTransform(input_size, in_chans, augment, normalization)
        self.backbone = build_backbone(
            backbone,
            num_classes,
            in_chans,
            pretrained_path,
            input_size,
            pretrained,
            feature_layer,
            feature_map_size,
        )
        self.feature_dim: int = int(self.backbone.feature_dim)

    def set_augment(self, augment: str) -> None:
        """Use train-time augmentation preset ``augment`` from now on (evaluation never augments)."""
        s = self.spec
        self.transform = FaceTransform(s["input_size"], s["in_chans"], augment, s["normalization"])
        self.spec["augment"] = augment

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 7]`` of frames ``[N, H, W, C]``; of sequences ``[B, T, H, W, C]`` the mean
        of each sequence's frame logits ``[B, 7]`` (one loss per sequence: sequence-level
        fine-tuning, ``cnn.sequence_frames``)."""
        if x.ndim == 5:
            b, t = x.shape[:2]
            return self._logits(self.transform(x.flatten(0, 1))).view(b, t, -1).mean(1)
        return self._logits(self.transform(x))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone logits of normalised ``[N, C, S, S]``; with ``tta: flip`` in eval mode, the
        mean of the image's and its mirror image's logits (test-time augmentation)."""
        if self.spec["tta"] == "flip" and not self.training:
            return (self.backbone(x) + self.backbone(x.flip(-1))) / 2
        return self.backbone(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[N, feature_dim]`` of ``feature_layer`` (no augmentation in eval mode)."""
        return self.backbone.forward_features(self.transform(x))


def save_face_model(
    path: str | Path,
    model: FaceModel,
    state_dict: dict[str, torch.Tensor] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Atomically write ``model.pt`` (``state_dict`` defaults to the model's current weights)."""
    state = state_dict if state_dict is not None else model.state_dict()
    blob = {
        "format": MODEL_FORMAT,
        **model.spec,
        "classes": list(EMOTIONS),
        "feature_dim": model.feature_dim,
        "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def face_model_from_spec(spec: Mapping[str, Any]) -> FaceModel:
    """An (untrained) :class:`FaceModel` of a saved spec (``model.pt``'s keys)."""
    return FaceModel(
        spec["backbone"],
        input_size=spec["input_size"],
        in_chans=spec["in_chans"],
        augment=spec["augment"],
        normalization=spec["normalization"],
        feature_layer=spec.get("feature_layer", "penultimate"),
        feature_map_size=spec.get("feature_map_size"),
        tta=spec.get("tta", "none"),
    )


def load_face_model(
    path: str | Path, device: str | torch.device = "cpu", features: Mapping[str, Any] | None = None
) -> tuple[FaceModel, dict[str, Any]]:
    """Rebuild a :class:`FaceModel` from ``model.pt`` (eval mode) → ``(model, extra)``; ``features``
    (``feature_layer``, ``feature_map_size``: :func:`avfer.config.feature_settings`) choose the
    layer ``forward_features`` reads instead of the saved one (the weights do not depend on it)."""
    path = Path(path)
    if not path.is_file():
        raise AvferError(f"{path}: model file does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise AvferError(f"{path}: not an avfer face model ({MODEL_FORMAT}); re-run its training rule")
    if list(blob["classes"]) != list(EMOTIONS):
        raise AvferError(f"{path}: class order {blob['classes']} differs from {list(EMOTIONS)}")
    model = face_model_from_spec({**blob, **(features or {})})
    model.load_state_dict(blob["state_dict"])
    return model.to(device).eval(), dict(blob.get("extra") or {})
