"""How to rebuild a trained sequence model from its checkpoint; the model names themselves are
:mod:`avfer.models.names` (no torch import), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from avfer.errors import AvferError
from avfer.models.audio import make_audio_model
from avfer.models.fusion import make_early_fusion
from avfer.models.names import ModelName, parse_model_name
from avfer.models.temporal import TemporalClassifier, parse_head

__all__ = ["ModelName", "build_model", "parse_model_name"]


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
