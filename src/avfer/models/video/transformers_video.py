"""Video transformers built from Hugging Face ``transformers`` configs (random init, nothing
downloaded).

==============  ===================================================================================
timesformer     TimeSformer (Bertasius et al., "Is space-time attention all you need for video
                understanding?", ICML 2021): ViT-B patches of every frame, *divided space-time
                attention* (each block attends over time, then over space), CLS classifier.
                ``transformers.TimesformerForVideoClassification`` with a ``TimesformerConfig``.
vivit           ViViT *factorised encoder* (Arnab et al., "ViViT: a video vision transformer",
                ICCV 2021, model 2): a spatial ViT over each frame's patches (``transformers.ViTModel``)
                gives one CLS token per frame; a temporal transformer (``ViTLayer`` blocks, 4 by
                default as ViViT-B/FE) over the frame tokens and its own CLS token; classifier.
vivit_joint     ViViT model 1 (joint space-time attention over tubelets), the layout of
                ``transformers.VivitForVideoClassification`` with a ``VivitConfig``.
==============  ===================================================================================

Input ``[B, C, T, H, W]`` (the transformers take ``[B, T, C, H, W]``; the wrappers transpose).
Any config field can be given as a keyword (``hidden_size``, ``num_hidden_layers``,
``patch_size``, ...), so tests and CPUs can use tiny ones. The parameter names are those of
the ``transformers`` classes, so their state dicts load with a mismatched classifier dropped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def timesformer(
    num_classes: int = 7, in_chans: int = 3, frames: int = 8, input_size: int = 224, **config: Any
) -> nn.Module:
    """TimeSformer with divided space-time attention (``attention_type`` may be overridden)."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    class Timesformer(TimesformerForVideoClassification):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(pixel_values=x.transpose(1, 2)).logits

    cfg = TimesformerConfig(
        num_labels=num_classes, num_channels=in_chans, num_frames=frames, image_size=input_size, **config
    )
    return Timesformer(cfg)


def vivit_joint(
    num_classes: int = 7, in_chans: int = 3, frames: int = 32, input_size: int = 224, **config: Any
) -> nn.Module:
    """ViViT model 1 (tubelet embedding, joint space-time attention)."""
    from transformers import VivitConfig, VivitForVideoClassification

    class Vivit(VivitForVideoClassification):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return super().forward(pixel_values=x.transpose(1, 2)).logits

    cfg = VivitConfig(
        num_labels=num_classes, num_channels=in_chans, num_frames=frames, image_size=input_size, **config
    )
    return Vivit(cfg)


class VivitFactorised(nn.Module):
    """ViViT factorised encoder: spatial ViT per frame → frame CLS tokens → temporal
    transformer → CLS → classifier. Input ``[B, C, T, H, W]``."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        frames: int = 16,
        input_size: int = 224,
        num_temporal_layers: int = 4,
        **config: Any,
    ) -> None:
        super().__init__()
        from transformers import ViTConfig, ViTModel
        from transformers.models.vit.modeling_vit import ViTLayer

        cfg = ViTConfig(num_channels=in_chans, image_size=input_size, **config)
        self.spatial = ViTModel(cfg, add_pooling_layer=False)
        tcfg = self.spatial.config  # attention implementation resolved by ViTModel
        d = cfg.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.time_embed = nn.Parameter(torch.zeros(1, frames + 1, d))
        nn.init.trunc_normal_(self.time_embed, std=cfg.initializer_range)
        self.temporal = nn.ModuleList(ViTLayer(tcfg) for _ in range(num_temporal_layers))
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.classifier = nn.Linear(d, num_classes)
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if t != self.frames:
            raise ValueError(f"vivit was built for {self.frames} frames, got {t}")
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        tokens = self.spatial(pixel_values=frames).last_hidden_state[:, 0].view(b, t, -1)
        z = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + self.time_embed
        for layer in self.temporal:
            z = layer(z)
        return self.classifier(self.norm(z[:, 0]))
