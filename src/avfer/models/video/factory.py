"""Build a clip-level video network by name: :func:`build_video_model` over :data:`BUILDERS`.

Every network takes float clips ``[B, C, T, H, W]`` and returns logits ``[B, num_classes]``;
random init, or a local state dict (``pretrained_path``: loaded non-strictly with
:func:`avfer.models.backbones.load_weights`, mismatched heads dropped and logged; nothing is
downloaded). Defaults (clip size, normalisation) live in :mod:`avfer.models.video.settings`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from avfer.errors import AvferError
from avfer.models.backbones import load_weights
from avfer.models.video.c3d import C3D, C3D2Layer, C3DDual
from avfer.models.video.cnn_lstm import VGG16LSTM
from avfer.models.video.settings import VIDEO_DEFAULTS, video_defaults
from avfer.models.video.torchvision_video import TORCHVISION_VIDEO, torchvision_video
from avfer.models.video.transformers_video import VivitFactorised, timesformer, vivit_joint
from avfer.models.video.tsm import TSMResNet

log = logging.getLogger(__name__)


def _tv(name: str) -> Callable[..., nn.Module]:
    return partial(torchvision_video, name)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "c3d": C3D,
    "c3d_dual": C3DDual,
    "c3d_2layer": C3D2Layer,
    "tsm_resnet18": partial(TSMResNet, "resnet18"),
    "tsm_resnet50": partial(TSMResNet, "resnet50"),
    **{name: _tv(name) for name in TORCHVISION_VIDEO},
    "timesformer": timesformer,
    "vivit": VivitFactorised,
    "vivit_joint": vivit_joint,
    "vgg16_lstm": VGG16LSTM,
}
assert set(BUILDERS) == set(VIDEO_DEFAULTS), "every video model needs a builder and defaults"


def build_video_model(
    name: str,
    num_classes: int = 7,
    *,
    in_chans: int = 3,
    frames: int | None = None,
    input_size: int | None = None,
    pretrained_path: str | Path | None = None,
    **args: Any,
) -> nn.Module:
    """Build network ``name`` of :data:`BUILDERS` for clips of ``frames`` x ``input_size``²
    (registry defaults when None) with ``in_chans`` channels; ``args`` go to its builder
    (e.g. ``dropout``, or any ``transformers`` config field). ``pretrained_path``: a local state
    dict (or checkpoint holding one), loaded non-strictly with shape-mismatched tensors dropped."""
    info = video_defaults(name)
    try:
        net = BUILDERS[name](
            num_classes=num_classes,
            in_chans=in_chans,
            frames=int(frames or info.frames),
            input_size=int(input_size or info.input_size),
            **args,
        )
    except (TypeError, ValueError) as exc:
        raise AvferError(f"video model {name}: {exc}") from None
    if pretrained_path:
        load_weights(net, pretrained_path)
    return net
