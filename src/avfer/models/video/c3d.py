"""C3D networks: the Sports-1M C3D, a dual-branch C3D with feature fusion, and a 2-layer C3D.

Input ``[B, C, T, H, W]`` floats, output logits ``[B, num_classes]``. Layer names follow the
common PyTorch port of the Sports-1M weights (``conv1 … conv5b``, ``fc6 … fc8``), so a converted
Sports-1M state dict loads with only ``fc8`` (487 classes) dropped.
"""

from __future__ import annotations

import torch
from torch import nn

# (name, output channels) of the C3D convolutions; a max-pool follows conv1, conv2, conv3b,
# conv4b and conv5b (Tran et al., "Learning spatiotemporal features with 3D convolutional
# networks", ICCV 2015, Fig. 3).
C3D_CONVS = (
    ("conv1", 64),
    ("conv2", 128),
    ("conv3a", 256),
    ("conv3b", 256),
    ("conv4a", 512),
    ("conv4b", 512),
    ("conv5a", 512),
    ("conv5b", 512),
)
_POOL_AFTER = {"conv1": "pool1", "conv2": "pool2", "conv3b": "pool3", "conv4b": "pool4", "conv5b": "pool5"}


def _pool(name: str) -> nn.MaxPool3d:
    if name == "pool1":  # no temporal pooling yet: keep the early motion signal
        return nn.MaxPool3d((1, 2, 2), (1, 2, 2))
    if name == "pool5":
        return nn.MaxPool3d(2, 2, padding=(0, 1, 1))
    return nn.MaxPool3d(2, 2)


def _pooled_size(frames: int, size: int) -> tuple[int, int]:
    """(T, H) after the five C3D pools (H = W); raises when the clip is too small."""
    t, h = frames, size
    for name in _POOL_AFTER.values():
        k_t, s_t = (1, 1) if name == "pool1" else (2, 2)
        pad = 1 if name == "pool5" else 0
        t = (t - k_t) // s_t + 1
        h = (h + 2 * pad - 2) // 2 + 1
    if t < 1 or h < 1:
        raise ValueError(f"C3D needs at least 16 frames of 16 px, got {frames} x {size}")
    return t, h


class C3DFeatures(nn.Module):
    """conv1 … pool5 of C3D: 3x3x3 convolutions (stride 1, padding 1) with ReLU, five max-pools."""

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        prev = in_chans
        for name, width in C3D_CONVS:
            self.add_module(name, nn.Conv3d(prev, width, 3, padding=1))
            if name in _POOL_AFTER:
                self.add_module(_POOL_AFTER[name], _pool(_POOL_AFTER[name]))
            prev = width
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T, H, W]`` → flattened pool5 ``[B, 512 * T' * H' * W']``."""
        for name, module in self.named_children():
            if name == "relu":
                continue
            x = module(x)
            if isinstance(module, nn.Conv3d):
                x = self.relu(x)
        return x.flatten(1)


class _FCHead(nn.Module):
    """fc6 → ReLU → dropout → fc7 → ReLU → dropout → fc8 (C3D's classifier)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.fc8 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu(self.fc6(x)))
        x = self.dropout(self.relu(self.fc7(x)))
        return self.fc8(x)


class C3D(nn.Module):
    """C3D (Tran et al. 2015, Sports-1M layout): 16x112x112 input; conv 64 / 128 / 256x2 /
    512x2 / 512x2 (3x3x3), five 3D max-pools (the first 1x2x2), fc6 / fc7 4096 with dropout 0.5,
    fc8 to the classes. ~78M parameters with a 7-way head at 16x112x112."""

    def __init__(
        self, num_classes: int = 7, in_chans: int = 3, frames: int = 16, input_size: int = 112, **head
    ) -> None:
        super().__init__()
        t, h = _pooled_size(frames, input_size)
        self.features = C3DFeatures(in_chans)
        self.head = _FCHead(512 * t * h * h, num_classes, **head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class C3DDual(nn.Module):
    """Dual-branch C3D with feature fusion: two C3D conv stacks (conv1 … pool5, no shared
    weights) whose flattened pool5 features are added before one fc6 / fc7 / fc8 head; only the
    head is shared, so it has ~32% fewer parameters than score-fusing two whole C3Ds.

    The face cache gives one stream, so the second branch sees ``second`` = ``difference`` (the
    frame-to-frame differences of the clip, a cheap motion stream; the last difference repeated)
    or ``same`` (the clip itself).
    """

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        frames: int = 16,
        input_size: int = 112,
        second: str = "difference",
        **head,
    ) -> None:
        super().__init__()
        if second not in ("difference", "same"):
            raise ValueError(f"c3d_dual: second must be 'difference' or 'same', not {second!r}")
        t, h = _pooled_size(frames, input_size)
        self.second = second
        self.branch1 = C3DFeatures(in_chans)
        self.branch2 = C3DFeatures(in_chans)
        self.head = _FCHead(512 * t * h * h, num_classes, **head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.second == "difference":
            d = x[:, :, 1:] - x[:, :, :-1]
            y = torch.cat([d, d[:, :, -1:]], dim=2)
        return self.head(self.branch1(x) + self.branch2(y))


class C3D2Layer(nn.Module):
    """A 2-layer C3D: two blocks of 3x3x3 convolution + batch norm + ReLU + 3D max-pool (the first
    1x2x2, the second 2x2x2), average pooling to ``time_bins`` x ``grid`` x ``grid`` (the
    classifier sees how the face changes from the start to the end of the clip, and where:
    mouth, eyes, brows), flattened, dropout and a linear classifier. Small enough to train on a
    CPU."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        frames: int = 16,
        input_size: int = 112,
        widths: tuple[int, int] | list[int] = (32, 64),
        grid: int = 4,
        time_bins: int = 2,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        del frames, input_size  # any clip size works (global pooling)
        w1, w2 = widths

        def block(cin: int, cout: int, pool: tuple[int, int, int]) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool3d(pool, pool),
            )

        self.block1 = block(in_chans, w1, (1, 2, 2))
        self.block2 = block(w1, w2, (2, 2, 2))
        self.pool = nn.AdaptiveAvgPool3d((time_bins, grid, grid))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(w2 * time_bins * grid * grid, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block2(self.block1(x))).flatten(1)
        return self.fc(self.dropout(x))
