"""A clip classifier = clip input pipeline + a network of :data:`~avfer.models.video.factory.BUILDERS`,
and its checkpoint file ``model.pt``.

The model takes uint8 face clips ``[B, T, H, W, C]`` (frames of the face cache, any size): every
frame is fitted and normalised as the frame CNNs do (:func:`~avfer.data.transforms.fit_images`,
:func:`~avfer.data.transforms.normalize`), and in training mode :class:`~avfer.data.transforms.Augment`
runs on the clip with its T frames stacked as channels, so flip, affine, brightness/contrast and
erasing are drawn once per clip and are the same on all of its frames. ``model.pt`` is a plain
dict (``torch.load(..., weights_only=True)``): ``format``, ``name``, ``spec``, ``classes``,
``state_dict`` and ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avfer.data.transforms import AUGMENT_PRESETS, Augment, fit_images, normalize
from avfer.errors import AvferError
from avfer.io.atomic import atomic_path
from avfer.labels import EMOTIONS, NUM_CLASSES
from avfer.models.video.factory import build_video_model
from avfer.models.video.settings import video_defaults

MODEL_FORMAT = "avfer-video/1"


class VideoClassifier(nn.Module):
    """uint8 clips ``[B, T, H, W, C]`` (or normalised float ``[B, T, C, S, S]``) → logits."""

    def __init__(
        self,
        name: str,
        *,
        frames: int,
        input_size: int,
        in_chans: int = 3,
        normalization: str = "symmetric",
        augment: str = "light",
        args: Mapping[str, Any] | None = None,
        pretrained_path: str | Path | None = None,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        info = video_defaults(name)
        if augment not in AUGMENT_PRESETS:
            raise AvferError(f"augment preset {augment!r} not in {sorted(AUGMENT_PRESETS)}")
        self.spec = {
            "name": name,
            "frames": int(frames),
            "input_size": int(input_size),
            "in_chans": int(in_chans),
            "normalization": normalization,
            "augment": augment,
            "args": dict(args or {}),
        }
        self.repeat = 3 if in_chans == 1 and not info.any_chans else 1
        net_chans = in_chans * self.repeat
        self.backbone = build_video_model(
            name,
            num_classes,
            in_chans=net_chans,
            frames=frames,
            input_size=input_size,
            pretrained_path=pretrained_path,
            **self.spec["args"],
        )
        params = AUGMENT_PRESETS[augment]
        self.augment = Augment(params) if params is not None else None

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, T, H, W, C]`` → normalised (and in training, augmented) ``[B, C, T, S, S]``."""
        s, c = self.spec["input_size"], self.spec["in_chans"]
        if x.dtype == torch.uint8:
            b, t = x.shape[:2]
            flat = fit_images(x.reshape(b * t, *x.shape[2:]), s, c)
            x = normalize(flat, self.spec["normalization"]).view(b, t, c, s, s)
        b, t = x.shape[:2]
        if self.training and self.augment is not None:
            x = self.augment(x.reshape(b, t * c, s, s)).view(b, t, c, s, s)
        if self.repeat > 1:
            x = x.expand(-1, -1, self.repeat, -1, -1)
        return x.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.transform(x))


def save_video_model(
    path: str | Path, model: VideoClassifier, state_dict: Mapping[str, torch.Tensor], extra: dict[str, Any]
) -> None:
    """Atomically write ``model.pt``."""
    blob = {
        "format": MODEL_FORMAT,
        "name": model.spec["name"],
        "spec": model.spec,
        "classes": list(EMOTIONS),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "extra": extra,
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_video_model(path: str | Path) -> tuple[VideoClassifier, dict[str, Any]]:
    """Rebuild a :class:`VideoClassifier` from ``model.pt`` (eval mode) → ``(model, extra)``."""
    path = Path(path)
    if not path.is_file():
        raise AvferError(f"{path}: model file does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise AvferError(f"{path}: not an avfer video model ({MODEL_FORMAT}); re-run train_video_model")
    if list(blob["classes"]) != list(EMOTIONS):
        raise AvferError(f"{path}: class order {blob['classes']} differs from {list(EMOTIONS)}")
    spec = dict(blob["spec"])
    model = VideoClassifier(spec.pop("name"), **spec)
    model.load_state_dict(blob["state_dict"])
    return model.eval(), dict(blob["extra"])
