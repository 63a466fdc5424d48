"""Video networks of ``torchvision.models.video`` (random init; ``weights=None``, nothing downloaded).

============  =======================================================================================
r3d_18        3D ResNet-18 (Tran et al., "A closer look at spatiotemporal convolutions", CVPR 2018)
mc3_18        mixed convolutions: 3D in the first block, 2D after (same paper)
r2plus1d_18   (2+1)D ResNet-18: each 3D convolution factorised into 2D spatial + 1D temporal
s3d           S3D (Xie et al., "Rethinking spatiotemporal feature learning", ECCV 2018)
mvit_v2_s     MViTv2-S (Li et al., "MViTv2: improved multiscale vision transformers", CVPR 2022)
swin3d_t      Video Swin-T (Liu et al., "Video Swin Transformer", CVPR 2022)
============  =======================================================================================

Input ``[B, 3, T, H, W]``. The parameter names are torchvision's, so a Kinetics-400 state dict
loads directly, with the 400-way classifier dropped. S3D's fixed 2x7x7 average pool is replaced
by a global one (identical at 16x224x224, and any other clip size works); MViTv2 is built for
the configured frames and input size (its position embeddings depend on them).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import torchvision
from torch import nn
from torchvision.models.video import mvit

TORCHVISION_VIDEO = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")


def torchvision_video(
    name: str,
    num_classes: int = 7,
    in_chans: int = 3,
    frames: int = 16,
    input_size: int = 112,
    dropout: float | None = None,
) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=...)`` for one of
    :data:`TORCHVISION_VIDEO`; ``dropout`` where the model has one (s3d, mvit_v2_s, swin3d_t)."""
    if name not in TORCHVISION_VIDEO:
        raise ValueError(f"{name!r} is not one of {TORCHVISION_VIDEO}")
    if in_chans != 3:
        raise ValueError(f"{name} takes 3 input channels, not {in_chans} (grey clips are repeated)")
    kwargs: dict = {}
    if dropout is not None and name in ("s3d", "mvit_v2_s", "swin3d_t"):
        kwargs["dropout"] = dropout
    if name == "mvit_v2_s":
        return _mvit_v2_s(frames, input_size, num_classes=num_classes, **kwargs)
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if name == "s3d":
        net.avgpool = nn.AdaptiveAvgPool3d(1)
    return net


def _mvit_v2_s(frames: int, input_size: int, **kwargs: Any) -> nn.Module:
    """``mvit_v2_s`` for ``frames`` x ``input_size``² clips: torchvision's builder fixes 16x224x224
    in its call to ``_mvit``, so that call gets the configured size instead."""
    build = mvit._mvit

    def sized(**kw: Any) -> nn.Module:
        return build(**{**kw, "spatial_size": (input_size, input_size), "temporal_size": frames})

    with mock.patch.object(mvit, "_mvit", sized):
        return mvit.mvit_v2_s(weights=None, **kwargs)
