"""Model names of the pipeline and how to rebuild a trained sequence model from its checkpoint.

Names (``{R}/models/<name>/``): ``cnn_<backbone>`` (frame CNN), ``<head>_<backbone>`` (temporal
head over CNN features, head = ``gru|bgru|lstm|blstm`` + optional ``_att``), ``audio_mlp`` /
``audio_gru``, ``early<option>_<backbone>`` (early fusion option a-d),
``e2e_<head or early option>_<backbone>`` (one of those trained end to end with its CNN,
:mod:`avfer.models.end_to_end`), and the clip-level video networks by their own names (``c3d``,
``r2plus1d_18``, ...; :mod:`avfer.models.video`); any of them with ``@seed<k>`` is one more
run of that model with seed k (a separate ensemble member).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from avfer.errors import AvferError
from avfer.models.audio import make_audio_model
from avfer.models.fusion import make_early_fusion
from avfer.models.temporal import HEAD_PATTERN, TemporalClassifier, parse_head
from avfer.models.video.settings import VIDEO_MODEL_NAMES

_PATTERNS = (
    ("video", "|".join(VIDEO_MODEL_NAMES)),
    ("cnn", r"cnn_(?P<backbone>.+)"),
    ("audio", r"audio_(?P<audio>mlp|gru)"),
    ("end_to_end", rf"e2e_(?P<inner>(?:{HEAD_PATTERN}|early[a-d])_(?P<backbone>.+))"),
    ("early_fusion", r"early(?P<option>[a-d])_(?P<backbone>.+)"),
    ("temporal", rf"(?P<head>{HEAD_PATTERN})_(?P<backbone>.+)"),
)
_INPUTS = {
    "temporal": ("video", "video_mask"),
    "audio_mlp": ("functionals", "has_audio"),
    "audio_gru": ("audio", "audio_mask"),
    "early_fusion": ("video", "video_mask", "audio", "audio_mask"),
}


@dataclass(frozen=True)
class ModelName:
    """A parsed model name: its family and the parts that name it."""

    name: str
    family: str
    head: str | None = None
    backbone: str | None = None
    audio: str | None = None
    option: str | None = None
    inner: str | None = None  # e2e_<inner>: the sequence model trained end to end with its CNN
    seed: int | None = None  # <model>@seed<k>

    @property
    def modality(self) -> str:
        """``visual``, ``audio`` or ``audio-visual``."""
        if self.family == "end_to_end":
            return parse_model_name(self.inner or "").modality
        families = {"cnn": "visual", "temporal": "visual", "video": "visual", "audio": "audio"}
        return families.get(self.family, "audio-visual")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The ``SequenceBatch`` keys the model reads (empty for a frame CNN)."""
        key = f"audio_{self.audio}" if self.family == "audio" else self.family
        return _INPUTS.get(key, ())


def parse_model_name(name: str) -> ModelName:
    """Parse ``cnn_<b>``, ``<head>_<b>``, ``audio_<mlp|gru>``, ``early<a-d>_<b>`` or a video
    network, each optionally followed by ``@seed<k>``."""
    seeded = re.fullmatch(r"(?P<base>.+)@seed(?P<seed>\d+)", name)
    base = seeded["base"] if seeded else name
    for family, pattern in _PATTERNS:
        m = re.fullmatch(pattern, base)
        if m:
            return ModelName(name, family, **m.groupdict(), seed=int(seeded["seed"]) if seeded else None)
    raise AvferError(
        f"model name {name!r} is not cnn_<backbone>, <head>_<backbone>, audio_mlp, audio_gru"
        " or early<a-d>_<backbone>, or a video network (" + ", ".join(VIDEO_MODEL_NAMES) + ")"
    )


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild an (untrained) model from a spec ``{"name", "dims", "args"}`` stored in model.pt."""
    parsed = parse_model_name(spec["name"])
    dims, args = dict(spec["dims"]), dict(spec["args"])
    if parsed.family == "temporal":
        return TemporalClassifier(dims["video"], modality="video", **parse_head(parsed.head or ""), **args)
    if parsed.family == "audio":
        return make_audio_model(parsed.audio or "", dims, **args)
    if parsed.family == "early_fusion":
        return make_early_fusion(parsed.option or "", dims, **args)
    raise AvferError(f"{spec['name']}: not a sequence model (trained by its own stage)")
