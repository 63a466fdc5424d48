"""VGG16 + LSTM: a frozen VGG16 applied to every frame, an LSTM over the frame features.

Layout of the reference system (16 frames of 224 px): VGG16 convolutional part (``features``,
13 conv layers, five max-pools) per frame, its 7x7x512 output flattened (25,088 values per frame;
``frame_pool="avg"`` takes the 512-d global average instead), an LSTM with 128 units whose last
state goes through a 128-unit dense layer (ReLU, dropout) to the classes.

The VGG16 is frozen (``freeze``), so it should come from local ImageNet weights
(``pretrained_path`` with torchvision's ``vgg16`` keys: ``features.*`` load, the ImageNet
``classifier.*`` is ignored); with random init it is a fixed random feature extractor.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn


class VGG16LSTM(nn.Module):
    """Input ``[B, 3, T, H, W]``, output ``[B, num_classes]``."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        frames: int = 16,
        input_size: int = 224,
        hidden_size: int = 128,
        dense_size: int = 128,
        dropout: float = 0.5,
        frame_pool: str = "flatten",
        freeze: bool = True,
    ) -> None:
        super().__init__()
        del frames, input_size  # any clip length; the 7x7 pool makes any size >= 32 px work
        if in_chans != 3:
            raise ValueError(f"vgg16_lstm takes 3 input channels, not {in_chans}")
        if frame_pool not in ("flatten", "avg"):
            raise ValueError(f"vgg16_lstm: frame_pool must be 'flatten' or 'avg', not {frame_pool!r}")
        vgg = torchvision.models.vgg16(weights=None)
        self.features = vgg.features
        self.pool = vgg.avgpool if frame_pool == "flatten" else nn.AdaptiveAvgPool2d(1)
        self.freeze = freeze
        if freeze:
            self.features.requires_grad_(False)
        dim = 512 * 7 * 7 if frame_pool == "flatten" else 512
        self.lstm = nn.LSTM(dim, hidden_size, batch_first=True)
        self.dense = nn.Linear(hidden_size, dense_size)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dense_size, num_classes)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, T, H, W]`` → per-frame VGG16 features ``[B, T, D]``."""
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            f = self.pool(self.features(frames)).flatten(1)
        return f.view(b, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.frame_features(x))
        return self.fc(self.dropout(torch.relu(self.dense(h[-1]))))
