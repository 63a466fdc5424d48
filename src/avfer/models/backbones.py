"""Image backbones by name (timm, torchvision, or the built-in mini-Xception), random init by
default, optionally initialised from a local weights file.

Every backbone is an ``nn.Module`` with ``feature_dim``, ``forward_features(x) -> [N, D]``
(the penultimate layer, globally pooled) and ``forward(x) -> [N, num_classes]`` logits.
Nothing is downloaded unless ``pretrained="imagenet"`` (timm's / torchvision's own download, see
:mod:`avfer.models.weights`): ``pretrained_path`` is a local ``torch.save``'d state_dict (or a
checkpoint holding one under ``state_dict``/``model``), or for ``mini_xception`` a Keras ``.hdf5``.
``feature_layer="fc6"`` makes ``forward_features`` return the fc6 layer of a VGG-style network,
``feature_layer="map"`` the last convolutional feature map before global pooling, flattened
channels-last (``feature_map_size`` G: average-pooled to G x G first), of timm CNNs, torchvision
models with an ``avgpool`` layer, mini_xception and the static CNNs (:func:`use_feature_map`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from avfer.errors import AvferError
from avfer.models.static_cnns import STATIC_CNNS, TRANSFER_SUFFIX, transfer_head
from avfer.models.weights import (
    FEATURE_LAYERS,
    PRETRAINED,
    FeatureMapLayer,
    WeightsError,
    fc6_features,
    imagenet_network,
)
from avfer.models.xception import MiniXception, load_keras_mini_xception

log = logging.getLogger(__name__)

# The reference set (name → where it comes from). Any other timm model name works too, and
# ``torchvision_<name>`` takes ``torchvision.models.<name>``.
REFERENCE_BACKBONES: dict[str, str] = {
    "mini_xception": "avfer (Arriaga et al. 2017), ~60k parameters, CPU friendly",
    "resnet18": "timm",
    "resnet50": "timm",
    "densenet121": "timm",
    "seresnet50": "timm",
    "seresnext50_32x4d": "timm",
    "vgg11_bn": "timm",
    "vgg16": "timm",
    "torchvision_vgg16": "torchvision",
    "torchvision_resnet18": "torchvision",
    "seed_cnn": "avfer static reference: 2x3x3 conv x (32, 64, 128) + dense 64-64",
    "seed_cnn_full": "avfer static reference: full padding, dropout, dense 2048",
    "vgg_pk": "avfer static reference: Pramerdorfer & Kampel VGG-style",
    "resnet50_fc": "timm resnet50 + FC 4096 + FC 1024 (transfer head)",
    "seresnet50_fc": "timm seresnet50 + FC 4096 + FC 1024 (transfer head)",
    "vgg16_fc": "timm vgg16 + FC 4096 + FC 1024 (transfer head)",
}
TORCHVISION_PREFIX = "torchvision_"


class BackboneError(AvferError, ValueError):
    """An unknown backbone name or an unusable weights file."""


def _set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, attr = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def _module_name(root: nn.Module, target: nn.Module) -> str:
    return next(name for name, m in root.named_modules() if m is target)


#: what cnn.feature_layer: map supports (named in its error)
MAP_BACKBONES = "timm CNNs, torchvision models with an avgpool layer, mini_xception, the static CNNs"


class Classifier(nn.Module, FeatureMapLayer):
    """A timm/torchvision network with its classifier split off as ``head``.

    ``net(x)`` gives the pooled penultimate features; ``head`` maps them to logits.
    ``head_key`` is the classifier's name inside the original network (to load bare state_dicts).
    """

    def __init__(self, net: nn.Module, feature_dim: int, num_classes: int, head_key: str, repeat: int = 1):
        super().__init__()
        self.net = net
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head_key = head_key
        self.repeat = repeat  # grey input → 3 channels for networks that cannot take 1
        self.feature_layer = "penultimate"

    def _rgb(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.repeat, -1, -1) if self.repeat > 1 else x

    def use_fc6(self) -> None:
        """Make :meth:`forward_features` return fc6 (VGG-style networks only)."""
        fc1 = getattr(getattr(self.net, "pre_logits", None), "fc1", None)
        if fc1 is None:
            raise BackboneError("cnn.feature_layer: fc6 needs a VGG-style backbone (timm vgg*)")
        self.feature_layer, self.feature_dim = "fc6", int(fc1.out_channels)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output before its global pooling: timm's ``forward_features`` (NHWC maps
        turned NCHW), or what enters a torchvision model's ``avgpool``."""
        x = self._rgb(x)
        if hasattr(self.net, "forward_features"):  # timm
            fmap = self.net.forward_features(x)
            return fmap.permute(0, 3, 1, 2) if getattr(self.net, "output_fmt", "NCHW") == "NHWC" else fmap
        pool = getattr(self.net, "avgpool", None)
        if not isinstance(pool, nn.Module):
            kind = type(self.net).__name__
            raise BackboneError(
                f"cnn.feature_layer: map needs one of: {MAP_BACKBONES}; torchvision {kind} has no avgpool"
            )
        seen: list[torch.Tensor] = []
        hook = pool.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
        try:
            self.net(x)
        finally:
            hook.remove()
        return seen[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate (or fc6, or flattened map) features ``[N, feature_dim]``."""
        if self.feature_layer == "fc6":
            return fc6_features(self.net, self._rgb(x))
        if self.feature_layer == "map":
            return self.map_features(x)
        return self.net(self._rgb(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(self._rgb(x)))


def _timm(name: str, num_classes: int, in_chans: int, imagenet: bool = False) -> Classifier:
    import timm

    if not timm.is_model(name):
        known = ", ".join(REFERENCE_BACKBONES)
        raise BackboneError(f"unknown backbone {name!r}; reference names: {known} (or any timm model)")
    net = imagenet_network(
        lambda: timm.create_model(name, pretrained=imagenet, num_classes=num_classes, in_chans=in_chans), name
    )
    head_key = _module_name(net, net.get_classifier())
    net.reset_classifier(0)
    dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
    return Classifier(net, dim, num_classes, head_key)


def _torchvision(name: str, num_classes: int, in_chans: int, imagenet: bool = False) -> Classifier:
    import torchvision

    try:
        if imagenet:  # the ImageNet classifier is replaced below by the Classifier's own head
            net = imagenet_network(
                lambda: torchvision.models.get_model(name, weights="DEFAULT"), TORCHVISION_PREFIX + name
            )
        else:
            net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except WeightsError:
        raise
    except ValueError as exc:
        raise BackboneError(f"unknown torchvision model {name!r} ({exc})") from None
    if in_chans not in (1, 3):
        raise BackboneError(f"torchvision backbones take 1 or 3 input channels, not {in_chans}")
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BackboneError(f"torchvision model {name!r} has no linear classifier to split off")
    head_key, last = linears[-1]
    _set_module(net, head_key, nn.Identity())
    return Classifier(net, last.in_features, num_classes, head_key, repeat=3 if in_chans == 1 else 1)


def build_backbone(
    name: str,
    num_classes: int = 7,
    in_chans: int = 3,
    pretrained_path: str | Path | None = None,
    input_size: int = 48,
    pretrained: str = "none",
    feature_layer: str = "penultimate",
    feature_map_size: int | None = None,
) -> nn.Module:
    """Build backbone ``name`` (see :data:`REFERENCE_BACKBONES`), randomly initialised unless
    ``pretrained`` is ``imagenet`` (timm / torchvision download) or ``pretrained_path`` names a
    local weights file (loaded with :func:`load_weights`, after ImageNet weights if both);
    ``input_size`` shapes the dense layers of the flattening static CNNs; ``feature_layer``
    ``fc6`` = the fc6 layer of a VGG-style network as its features, ``map`` = its flattened last
    feature map (pooled to ``feature_map_size`` squared cells unless None, see :func:`use_feature_map`)."""
    if pretrained not in PRETRAINED or feature_layer not in FEATURE_LAYERS:
        raise BackboneError(f"cnn.pretrained {pretrained!r} / feature_layer {feature_layer!r} unknown")
    imagenet = pretrained == "imagenet"
    if imagenet and (name == "mini_xception" or name in STATIC_CNNS):
        raise BackboneError(f"cnn.pretrained: imagenet - {name} has no ImageNet weights (it is FER2013-only)")
    if name == "mini_xception":
        model: nn.Module = MiniXception(num_classes, in_chans)
    elif name in STATIC_CNNS:
        model = STATIC_CNNS[name](num_classes, in_chans, input_size)
    elif name.endswith(TRANSFER_SUFFIX) and not name.startswith(TORCHVISION_PREFIX):
        base = _timm(name.removesuffix(TRANSFER_SUFFIX), num_classes, in_chans, imagenet)
        model = transfer_head(base, num_classes)
    elif name.startswith(TORCHVISION_PREFIX):
        model = _torchvision(name.removeprefix(TORCHVISION_PREFIX), num_classes, in_chans, imagenet)
    else:
        model = _timm(name, num_classes, in_chans, imagenet)
    if feature_layer == "fc6":
        if not isinstance(model, Classifier):
            raise BackboneError(f"cnn.feature_layer: fc6 needs a VGG-style timm backbone, not {name}")
        model.use_fc6()
    elif feature_layer == "map":
        use_feature_map(model, name, feature_map_size, input_size, in_chans)
    if pretrained_path:
        load_weights(model, pretrained_path)
    return model


def use_feature_map(model: nn.Module, name: str, size: int | None, input_size: int, in_chans: int) -> None:
    """Make ``model.forward_features`` return its flattened last feature map (``cnn.feature_layer:
    map``; ``size`` G: adaptive-average-pooled to G x G first) and set ``feature_dim`` from a dry
    forward pass of zeros at ``input_size`` (the map's size depends on it)."""
    if size is not None and size < 1:
        raise BackboneError(f"cnn.feature_map_size must be >= 1 or null, not {size}")
    if not isinstance(model, FeatureMapLayer):
        raise BackboneError(f"cnn.feature_layer: map needs one of: {MAP_BACKBONES}; not {name}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fmap = model.forward_feature_map(torch.zeros(1, in_chans, input_size, input_size))
    except BackboneError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a ViT fixed to another image size
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise BackboneError(
            f"cnn.feature_layer: map - {name} does not run at input_size {input_size} ({reason})"
        ) from None
    finally:
        model.train(was_training)
    if fmap.ndim != 4:
        raise BackboneError(
            f"cnn.feature_layer: map needs a convolutional backbone ({MAP_BACKBONES}); "
            f"{name} gives features of shape {tuple(fmap.shape)}, not [N, C, H, W]"
        )
    model.feature_layer, model.feature_map_size = "map", size
    cells = size * size if size is not None else fmap.shape[2] * fmap.shape[3]
    model.feature_dim = int(fmap.shape[1] * cells)
    log.info("%s: feature map %s -> feature_dim %d", name, tuple(fmap.shape[1:]), model.feature_dim)


def _read_state_dict(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"{path}: weights file does not exist")
    if path.suffix.lower() in (".h5", ".hdf5"):
        if not isinstance(model, MiniXception):
            raise BackboneError(f"{path}: Keras .hdf5 weights are only supported for mini_xception")
        return load_keras_mini_xception(path).state_dict()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise BackboneError(f"{path}: not a torch weights file ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path}: does not hold a state_dict (name → tensor)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _align_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map keys of our saved models (``backbone.``) or of a bare network onto ``model``."""
    own = set(model.state_dict())
    if any(k.startswith("backbone.") for k in state):
        state = {k.removeprefix("backbone."): v for k, v in state.items()}
    if isinstance(model, Classifier) and not any(k.startswith(("net.", "head.")) for k in state):
        head = model.head_key + "."
        state = {
            ("head." + k.removeprefix(head)) if k.startswith(head) else "net." + k: v
            for k, v in state.items()
        }
    if not own & set(state):
        raise BackboneError("no parameter name of the weights file matches the backbone")
    return state


def load_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load a local weights file into ``model`` (``strict=False``).

    Tensors whose shape differs from the model's (e.g. a 1000-class ImageNet classifier) are
    dropped; missing, unexpected and dropped keys are logged and returned.
    """
    path = Path(path)
    state = _align_keys(_read_state_dict(path, model), model)
    own = model.state_dict()
    dropped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for k in dropped:
        del state[k]
    result = model.load_state_dict(state, strict=False)
    report = {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}
    report["dropped"] = dropped
    log.info(
        "loaded %s: %d tensors; missing %s; unexpected %s; dropped (shape mismatch) %s",
        path,
        len(state) - len(result.unexpected_keys),
        report["missing"] or "none",
        report["unexpected"] or "none",
        dropped or "none",
    )
    return report
