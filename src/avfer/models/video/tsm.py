"""TSM: Temporal Shift Module on a 2D ResNet (Lin et al., "TSM: Temporal Shift Module for
Efficient Video Understanding", ICCV 2019).

A torchvision ResNet-18/50 whose every residual block shifts 1/8 of its channels one frame
forward and 1/8 one frame back in time before its first convolution (the residual-branch
"in-place" shift of the paper; the identity path is unshifted). The frames go through the 2D
network as a batch of ``B * T`` images and the clip logits are the mean over the T frames
(TSN-style consensus). The parameter names are torchvision's, so an ImageNet (or TSM Kinetics)
ResNet state dict loads directly, with the 1000-way ``fc`` dropped.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def temporal_shift(x: torch.Tensor, frames: int, fold_div: int = 8) -> torch.Tensor:
    """Shift ``[B * T, C, H, W]`` along time: channels ``[0, C/fold_div)`` take the next frame's
    values, ``[C/fold_div, 2C/fold_div)`` the previous frame's, the rest stay; zero-padded."""
    bt, c, h, w = x.shape
    v = x.view(bt // frames, frames, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]  # shift left: frame t sees t + 1
    out[:, 1:, fold : 2 * fold] = v[:, :-1, fold : 2 * fold]  # shift right: frame t sees t - 1
    out[:, :, 2 * fold :] = v[:, :, 2 * fold :]
    return out.view(bt, c, h, w)


class TSMResNet(nn.Module):
    """A torchvision ResNet with a temporal shift in the residual branch of every block.

    Input ``[B, C, T, H, W]`` (T = ``frames``), output ``[B, num_classes]``.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        num_classes: int = 7,
        in_chans: int = 3,
        frames: int = 8,
        input_size: int = 224,
        fold_div: int = 8,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        del input_size  # any size works (global pooling)
        net = torchvision.models.get_model(arch, weights=None)
        if in_chans != 3:
            net.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.frames, self.fold_div = int(frames), int(fold_div)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
            self.add_module(name, getattr(net, name))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                block.conv1.register_forward_pre_hook(self._shift)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(net.fc.in_features, num_classes)

    def _shift(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (temporal_shift(args[0], self.frames, self.fold_div),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if t != self.frames:
            raise ValueError(f"TSM was built for {self.frames} frames, got {t}")
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x)).view(b, t, -1).mean(1)
