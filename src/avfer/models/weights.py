"""Where a backbone's initial weights come from: ImageNet weights through timm's / torchvision's
own download (``cnn.pretrained: imagenet``, for online nodes), the published VGG-Face weights
converted into the ``vgg16`` backbone, and the feature layers other than the pooled penultimate
one: fc6 of VGG-style networks and ``map``, the last convolutional feature map before global
pooling (optionally average-pooled to G x G), flattened channels-last.

The VGG-Face converter reads the PyTorch release of the VGG-Face weights (``vgg_face_dag.pth``:
``conv1_1 ... conv5_3`` convolutions, ``fc6`` / ``fc7`` / ``fc8`` linear layers, 2,622 identities)
and writes a state_dict for timm's ``vgg16`` (``features.<i>``, ``pre_logits.fc1`` / ``fc2`` as
7x7 / 1x1 convolutions); the identity classifier fc8 is dropped. Use the file as
``cnn.pretrained_paths: {vgg16: vgg_face_vgg16.pt}`` with ``cnn.feature_layer: fc6``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avfer.errors import AvferError
from avfer.io.atomic import atomic_path

log = logging.getLogger(__name__)

PRETRAINED = ("none", "imagenet")
FEATURE_LAYERS = ("penultimate", "fc6", "map")
# VGG-16's 13 convolutions and their index in timm's / torchvision's ``features`` Sequential
VGG16_CONVS = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]
VGG16_FEATURE_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


class WeightsError(AvferError, ValueError):
    """Weights that cannot be obtained or converted."""


def imagenet_network(build, name: str) -> nn.Module:
    """Call ``build()`` (a timm / torchvision constructor asking for pretrained weights); a failed
    download (offline node, no cache) becomes one line naming the local-file option."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - hub, HTTP and file errors all mean "no weights here"
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise WeightsError(
            f"cnn.pretrained: imagenet could not get ImageNet weights for {name!r} ({reason}); "
            f"offline nodes: give a local file as cnn.pretrained_paths: {{{name}: <weights.pt>}}"
        ) from None


def convert_vgg_face(src: str | Path, dst: str | Path) -> dict[str, torch.Tensor]:
    """Convert the VGG-Face release (``vgg_face_dag.pth``) into a timm ``vgg16`` state_dict at ``dst``."""
    src = Path(src)
    if not src.is_file():
        raise WeightsError(f"{src}: VGG-Face weights file does not exist")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{src}: not a torch weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    needed = [f"{c}.{p}" for c in [*VGG16_CONVS, "fc6", "fc7"] for p in ("weight", "bias")]
    missing = [k for k in needed if k not in state]
    if missing:
        raise WeightsError(
            f"{src}: not the VGG-Face layout (conv1_1 ... conv5_3, fc6, fc7); lacks {missing[:3]}"
        )
    out: dict[str, torch.Tensor] = {}
    for name, index in zip(VGG16_CONVS, VGG16_FEATURE_INDEX, strict=True):
        for p in ("weight", "bias"):
            out[f"features.{index}.{p}"] = state[f"{name}.{p}"].float().clone()
    fc6, fc7 = state["fc6.weight"].float(), state["fc7.weight"].float()
    if fc6.shape[-1] != 512 * 7 * 7 and fc6.dim() == 2:
        raise WeightsError(f"{src}: fc6 has {fc6.shape[-1]} inputs, expected 25088 (512 x 7 x 7)")
    out["pre_logits.fc1.weight"] = fc6.reshape(4096, 512, 7, 7).clone()
    out["pre_logits.fc1.bias"] = state["fc6.bias"].float().clone()
    out["pre_logits.fc2.weight"] = fc7.reshape(4096, 4096, 1, 1).clone()
    out["pre_logits.fc2.bias"] = state["fc7.bias"].float().clone()
    with atomic_path(dst) as tmp:
        torch.save(out, tmp)
    log.info("converted %s (fc8 with %d identities dropped) -> %s", src, len(state.get("fc8.bias", [])), dst)
    return out


def fc6_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The fc6 activations ``[N, 4096]`` (after ReLU) of a timm VGG (``pre_logits`` = ConvMlp)."""
    mlp = getattr(net, "pre_logits", None)
    if mlp is None or not hasattr(mlp, "fc1"):
        raise WeightsError(
            f"cnn.feature_layer: fc6 needs a VGG-style backbone (timm vgg*), not {type(net).__name__}"
        )
    fmap = net.forward_features(x)
    k = mlp.fc1.kernel_size
    if fmap.shape[-2] < k[0] or fmap.shape[-1] < k[1]:
        fmap = F.adaptive_avg_pool2d(fmap, (max(k[0], fmap.shape[-2]), max(k[1], fmap.shape[-1])))
    return mlp.act1(mlp.fc1(fmap)).mean(dim=(2, 3))


def flatten_map(fmap: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """A feature map ``[N, C, h, w]`` as ``[N, h * w * C]`` (channels-last: the C values of one
    cell are adjacent), first adaptive-average-pooled to ``size`` x ``size`` unless ``size`` is None."""
    if size is not None:
        fmap = F.adaptive_avg_pool2d(fmap, size)
    return fmap.permute(0, 2, 3, 1).flatten(1)


class FeatureMapLayer:
    """Mixin of the backbones whose ``forward_feature_map(x) -> [N, C, h, w]`` is their last
    convolutional map before global pooling: ``feature_layer = "map"`` (set by
    :func:`avfer.models.backbones.use_feature_map`) makes ``forward_features`` return
    :meth:`map_features` (``feature_map_size`` G: pooled to G x G first; None: as it is)."""

    feature_layer: str = "penultimate"
    feature_map_size: int | None = None

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def map_features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened (pooled) feature map ``[N, feature_dim]``."""
        return flatten_map(self.forward_feature_map(x), self.feature_map_size)
