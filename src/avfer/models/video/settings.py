"""The video networks' names and working defaults, and their settings from the config.

Kept free of torch imports: ``rules/common.smk`` resolves each model's settings (the rule's
``params``) with :func:`video_settings` when it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from avfer.errors import AvferError


@dataclass(frozen=True)
class VideoDefaults:
    """Clip size and input scaling a network is designed for, and whether its stem takes any
    number of channels (False: grey clips are repeated to 3 channels)."""

    input_size: int
    frames: int
    normalization: str
    any_chans: bool
    about: str


VIDEO_DEFAULTS: dict[str, VideoDefaults] = {
    "c3d": VideoDefaults(112, 16, "symmetric", True, "C3D, Sports-1M layout (78M parameters)"),
    "c3d_dual": VideoDefaults(112, 16, "symmetric", True, "dual-branch C3D, pool5 features added"),
    "c3d_2layer": VideoDefaults(112, 16, "symmetric", True, "2-layer C3D (CPU friendly)"),
    "tsm_resnet18": VideoDefaults(224, 8, "imagenet", True, "TSM on ResNet-18"),
    "tsm_resnet50": VideoDefaults(224, 8, "imagenet", True, "TSM on ResNet-50"),
    "r3d_18": VideoDefaults(112, 16, "kinetics", False, "3D ResNet-18 (torchvision)"),
    "mc3_18": VideoDefaults(112, 16, "kinetics", False, "mixed-convolution ResNet-18 (torchvision)"),
    "r2plus1d_18": VideoDefaults(112, 16, "kinetics", False, "R(2+1)D-18 (torchvision)"),
    "s3d": VideoDefaults(224, 16, "kinetics", False, "S3D (torchvision)"),
    "mvit_v2_s": VideoDefaults(224, 16, "kinetics", False, "MViTv2-S (torchvision)"),
    "swin3d_t": VideoDefaults(224, 16, "kinetics", False, "Video Swin-T (torchvision)"),
    "timesformer": VideoDefaults(224, 8, "symmetric", True, "TimeSformer, divided space-time attention"),
    "vivit": VideoDefaults(224, 16, "symmetric", True, "ViViT factorised encoder"),
    "vivit_joint": VideoDefaults(224, 32, "symmetric", True, "ViViT model 1 (joint space-time attention)"),
    "vgg16_lstm": VideoDefaults(224, 16, "imagenet", False, "frozen VGG16 per frame + LSTM 128 + dense 128"),
}
VIDEO_MODEL_NAMES = tuple(VIDEO_DEFAULTS)

# per-model keys: video_models.per_model.<name>.<key> overrides video_models.<key>
_CLIP_KEYS = ("frames", "input_size", "in_chans", "normalization", "augment")
_SAMPLING_KEYS = ("sampling", "dense_stride", "test_clips", "store_frames")


def video_defaults(name: str) -> VideoDefaults:
    """The defaults of ``name``; an :class:`AvferError` naming the known models otherwise."""
    if name not in VIDEO_DEFAULTS:
        raise AvferError(f"unknown video model {name!r}; known: {', '.join(VIDEO_DEFAULTS)}")
    return VIDEO_DEFAULTS[name]


def video_settings(name: str, section: Mapping[str, Any]) -> dict[str, Any]:
    """The result-affecting settings of video model ``name`` from the ``video_models`` section:
    the section's values, overridden by ``per_model.<name>``, with the model's defaults (input
    size, frames, normalisation of :data:`VIDEO_DEFAULTS`) where null. Leaves out what does not
    change results (device, evaluation batch size, resources)."""
    info = video_defaults(name)
    own = dict((section.get("per_model") or {}).get(name) or {})
    defaults = {"frames": info.frames, "input_size": info.input_size, "normalization": info.normalization}
    out: dict[str, Any] = {"name": name}
    for key in (*_CLIP_KEYS, *_SAMPLING_KEYS):
        value = own.get(key, section.get(key))
        out[key] = defaults.get(key) if value is None and key in defaults else value
    out["args"] = dict(own.get("args") or {})
    out["pretrained_path"] = own.get("pretrained_path")
    out["train"] = {**section["train"], **(own.get("train") or {}), "amp": bool(section.get("amp", False))}
    return out
