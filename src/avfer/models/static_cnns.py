"""The FER2013 image models of the static reference systems (webcam / video-file / image
classification), built by name beside :mod:`avfer.models.backbones`.

* ``seed_cnn``: three blocks of two 3x3 convolutions (32 / 64 / 128 filters, ``same`` padding,
  ReLU, 2x2 max-pooling), then dense 64-64-7.
* ``seed_cnn_full``: the "full"-padding variant (each 3x3 convolution pads by 2, so maps grow by
  2 pixels, as Theano's ``border_mode='full'``), one convolution per block, dropout 0.25 after each
  block, dense 2048 with dropout 0.5, then 7.
* ``vgg_pk``: the Pramerdorfer & Kampel (2016) VGG-style net: four blocks of two 3x3
  convolutions (64 / 128 / 256 / 512, batch-norm, ReLU, max-pool, dropout 0.25), dense
  1024-1024 (dropout 0.5), then 7.
* ``<base>_fc`` for ``resnet50``, ``seresnet50``, ``vgg16`` (any timm name): the transfer heads,
  the pooled timm network followed by FC 4096 and FC 1024 (ReLU, dropout 0.5) and the classifier;
  freeze its first layers with ``train.freeze_first``.

(``mini_xception``, the mini-Xception of Arriaga et al., is built in :mod:`avfer.models.xception`.)
Every model has ``feature_dim``, ``num_classes``, ``forward_features(x) -> [N, D]`` (the last
hidden layer; with ``feature_layer`` ``map`` the last convolution block's flattened map, of the
timm network for a transfer head) and ``forward(x) -> [N, num_classes]``; its classifier is ``head``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from avfer.labels import NUM_CLASSES
from avfer.models.weights import FeatureMapLayer

TRANSFER_SUFFIX = "_fc"


def _dense(dims: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims, dims[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class StaticCNN(nn.Module, FeatureMapLayer):
    """Convolution blocks → flatten → dense layers → ``head`` (input ``[N, C, H, W]``; the dense
    layers are sized for ``input_size``, other sizes are max-pooled onto the same grid)."""

    def __init__(
        self,
        blocks: Sequence[Sequence[int]],
        dense: Sequence[int],
        *,
        in_chans: int = 1,
        num_classes: int = NUM_CLASSES,
        padding: int = 1,
        batch_norm: bool = False,
        block_dropout: float = 0.0,
        dense_dropout: float = 0.0,
        input_size: int = 48,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for filters in blocks:
            for f in filters:
                layers.append(nn.Conv2d(c, f, 3, padding=padding))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(f))
                layers.append(nn.ReLU(inplace=True))
                c = f
            layers.append(nn.MaxPool2d(2))
            if block_dropout:
                layers.append(nn.Dropout(block_dropout))
        with torch.no_grad():
            grid = nn.Sequential(*layers)(torch.zeros(1, in_chans, input_size, input_size)).shape[-2:]
        # identity at input_size; other input sizes are pooled onto the same grid
        self.features = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(tuple(grid)))
        flat = c * int(grid[0]) * int(grid[1])
        self.fc = _dense([flat, *dense], dense_dropout)
        self.head = nn.Linear(dense[-1], num_classes)
        self.feature_dim, self.num_classes, self.input_size = dense[-1], num_classes, input_size
        for m in self.modules():  # He init: a deep plain ReLU stack does not start learning otherwise
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's map ``[N, C, h, w]`` (the grid of ``input_size``)."""
        return self.features(x)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer ``[N, feature_dim]`` (what the classifier reads)."""
        return self.fc(torch.flatten(self.features(x), 1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer ``[N, feature_dim]``, or the flattened map (``feature_layer: map``)."""
        return self.map_features(x) if self.feature_layer == "map" else self.hidden(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))


class TransferHead(nn.Module, FeatureMapLayer):
    """A pooled (timm) network + FC 4096 + FC 1024 (ReLU, dropout) + ``head``."""

    def __init__(self, net: nn.Module, net_dim: int, num_classes: int = NUM_CLASSES, dropout: float = 0.5):
        super().__init__()
        self.net = net
        self.fc = _dense([net_dim, 4096, 1024], dropout)
        self.head = nn.Linear(1024, num_classes)
        self.feature_dim, self.num_classes = 1024, num_classes

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The timm network's map before its global pooling."""
        return self.net.forward_feature_map(x)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The FC 1024 layer ``[N, 1024]`` (what the classifier reads)."""
        return self.fc(self.net.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The FC 1024 layer ``[N, 1024]``, or the flattened map (``feature_layer: map``)."""
        return self.map_features(x) if self.feature_layer == "map" else self.hidden(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x))


def seed_cnn(num_classes: int, in_chans: int, input_size: int = 48) -> StaticCNN:
    """The seed CNN: 2x(3x3 conv) x (32, 64, 128) + dense 64-64."""
    return StaticCNN([(32, 32), (64, 64), (128, 128)], [64, 64], in_chans=in_chans,
                     num_classes=num_classes, input_size=input_size)  # fmt: skip


def seed_cnn_full(num_classes: int, in_chans: int, input_size: int = 48) -> StaticCNN:
    """The full-padding variant with dropout and dense 2048."""
    return StaticCNN([(32,), (64,), (128,)], [2048], in_chans=in_chans, num_classes=num_classes,
                     padding=2, block_dropout=0.25, dense_dropout=0.5, input_size=input_size)  # fmt: skip


def vgg_pk(num_classes: int, in_chans: int, input_size: int = 48) -> StaticCNN:
    """Pramerdorfer & Kampel's VGG-style net."""
    return StaticCNN([(64, 64), (128, 128), (256, 256), (512, 512)], [1024, 1024], in_chans=in_chans,
                     num_classes=num_classes, batch_norm=True, block_dropout=0.25, dense_dropout=0.5,
                     input_size=input_size)  # fmt: skip


STATIC_CNNS: dict[str, Callable[..., StaticCNN]] = {
    "seed_cnn": seed_cnn,
    "seed_cnn_full": seed_cnn_full,
    "vgg_pk": vgg_pk,
}
TRANSFER_BASES = ("resnet50", "seresnet50", "vgg16")


def transfer_head(base: nn.Module, num_classes: int) -> TransferHead:
    """Wrap a built :class:`avfer.models.backbones.Classifier` (its pooled ``net``) in a transfer head."""
    return TransferHead(_Pooled(base), base.feature_dim, num_classes)


class _Pooled(nn.Module):
    """The pooled-feature part of a Classifier (keeps its ``net`` keys and grey→RGB repeat)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.net = classifier.net
        self.repeat = classifier.repeat

    def _rgb(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.repeat, -1, -1) if self.repeat > 1 else x

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(self._rgb(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._rgb(x))
