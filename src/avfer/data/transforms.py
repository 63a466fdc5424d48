"""Image transforms on batched tensors, train and eval presets side by side.

Images travel as uint8 ``[N, H, W, C]`` (cheap to index, copy and move to the GPU); the model
input is float ``[N, C, S, S]``. Both presets share the deterministic part:

=========  =====================================================================================
eval       :func:`fit_images` (grey if 1 channel, antialiased resize to S, rounded to uint8)
           → :func:`normalize` (``(x / 255 - mean) / std``)
train      the same, then :class:`Augment` with a preset from :data:`AUGMENT_PRESETS`: random
           flip, affine (rotation, scale, translation; one ``grid_sample`` per batch),
           brightness/contrast jitter and random erasing, drawn per image from torch's RNG
           (seeded per epoch by :func:`avfer.train.fit`), on whatever device the batch is on
=========  =====================================================================================

:func:`fit_images` is also what the loaders apply once when they load a dataset, so a batch
that is already at the model's size and channels is only normalised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB → grey
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "symmetric": ((0.5,), (0.5,)),  # [-1, 1], as the FER2013 Keras models
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "kinetics": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),  # torchvision video
}


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random train-time augmentation (0 disables a part)."""

    flip: bool = True
    degrees: float = 10.0
    scale: float = 0.1
    translate: float = 0.08
    brightness: float = 0.2
    contrast: float = 0.2
    erase: float = 0.25


AUGMENT_PRESETS: dict[str, AugmentParams | None] = {
    "none": None,
    "light": AugmentParams(degrees=5.0, scale=0.05, translate=0.04, brightness=0.1, contrast=0.1, erase=0.0),
    "standard": AugmentParams(),
}


def fit_images(images: np.ndarray | torch.Tensor, size: int, chans: int, chunk: int = 512) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` → uint8 ``[N, size, size, chans]``: grey (BT.601) when
    ``chans == 1``, grey replicated when the source is grey and ``chans == 3``, antialiased
    bilinear resize, rounded. Returns the input unchanged when it already fits."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 [N, H, W, C] images, got {x.dtype} {tuple(x.shape)}")
    n, h, w, c = x.shape
    if (h, w, c) == (size, size, chans):
        return x
    out = torch.empty((n, size, size, chans), dtype=torch.uint8, device=x.device)
    for i in range(0, n, chunk):
        part = x[i : i + chunk].permute(0, 3, 1, 2).float()
        if chans == 1 and c == 3:
            weights = torch.tensor(GREY, device=x.device).view(1, 3, 1, 1)
            part = (part * weights).sum(1, keepdim=True)
        elif chans == 3 and c == 1:
            part = part.expand(-1, 3, -1, -1)
        elif chans != c:
            raise ValueError(f"cannot turn {c}-channel images into {chans} channels")
        if (h, w) != (size, size):
            part = F.interpolate(
                part, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        out[i : i + chunk] = part.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out


def normalize(images: torch.Tensor, normalization: str = "symmetric") -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` → float ``[N, C, H, W]`` scaled by ``NORMALIZATIONS[normalization]``."""
    mean, std = NORMALIZATIONS[normalization]
    c = images.shape[-1]
    m = torch.tensor(mean * c if len(mean) == 1 else mean[:c], device=images.device).view(1, c, 1, 1)
    s = torch.tensor(std * c if len(std) == 1 else std[:c], device=images.device).view(1, c, 1, 1)
    return (images.permute(0, 3, 1, 2).float().div_(255) - m) / s


class Augment(nn.Module):
    """Random per-image augmentation of a normalised float batch ``[N, C, H, W]`` (train only)."""

    def __init__(self, params: AugmentParams) -> None:
        super().__init__()
        self.params = params

    def _uniform(self, n: int, half_width: float, device: torch.device) -> torch.Tensor:
        return (torch.rand(n, device=device) * 2 - 1) * half_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, n, dev = self.params, x.shape[0], x.device
        angle = self._uniform(n, math.radians(p.degrees), dev)
        scale = 1 + self._uniform(n, p.scale, dev)
        flip = (
            torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0) if p.flip else torch.ones(n, device=dev)
        )
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, self._uniform(n, 2 * p.translate, dev)], 1),
                torch.stack([sin * flip, cos, self._uniform(n, 2 * p.translate, dev)], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if p.brightness or p.contrast:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            contrast = 1 + self._uniform(n, p.contrast, dev).view(n, 1, 1, 1)
            bright = self._uniform(n, 2 * p.brightness, dev).view(n, 1, 1, 1)
            x = (x - mean) * contrast + mean + bright
        if p.erase:
            x = _random_erase(x, p.erase)
        return x


def _random_erase(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero one random rectangle (2-20% of the area) in a fraction ``prob`` of the images."""
    n, _, h, w = x.shape
    dev = x.device
    area = torch.empty(n, device=dev).uniform_(0.02, 0.2)
    aspect = torch.exp(torch.empty(n, device=dev).uniform_(math.log(0.3), math.log(3.3)))
    eh = (torch.sqrt(area * aspect) * h).clamp(1, h)
    ew = (torch.sqrt(area / aspect) * w).clamp(1, w)
    y0 = torch.rand(n, device=dev) * (h - eh)
    x0 = torch.rand(n, device=dev) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = (ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
    box = box & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1))
    box = box & (torch.rand(n, device=dev) < prob).view(n, 1, 1)
    return x.masked_fill(box.unsqueeze(1), 0.0)


class FaceTransform(nn.Module):
    """The model-side input pipeline: uint8 ``[N, H, W, C]`` → float ``[N, C, S, S]``.

    Applies :func:`fit_images` and :func:`normalize` always, and :class:`Augment` (preset
    ``augment``) only in training mode. A float input is taken as already normalised.
    """

    def __init__(
        self, size: int, chans: int, augment: str = "standard", normalization: str = "symmetric"
    ) -> None:
        super().__init__()
        if augment not in AUGMENT_PRESETS:
            raise ValueError(f"augment preset {augment!r} not in {sorted(AUGMENT_PRESETS)}")
        self.size, self.chans, self.normalization = size, chans, normalization
        params = AUGMENT_PRESETS[augment]
        self.augment = Augment(params) if params is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = normalize(fit_images(x, self.size, self.chans), self.normalization)
        if self.training and self.augment is not None:
            x = self.augment(x)
        return x
