"""Model names of the pipeline (no torch import: ``rules/common.smk`` and :mod:`avfer.plan` read them).

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
from dataclasses import dataclass

from avfer.errors import AvferError
from avfer.models.video.settings import VIDEO_MODEL_NAMES

HEAD_PATTERN = r"b?(gru|lstm)(_att)?"  # temporal heads
AUDIO_PATTERN = "mlp|gru"  # audio_<model>
OPTION_PATTERN = "[a-d]"  # early<option>
SEED_PATTERN = r"\d+"  # <model>@seed<k>

_PATTERNS = (
    ("video", "|".join(VIDEO_MODEL_NAMES)),
    ("cnn", r"cnn_(?P<backbone>.+)"),
    ("audio", rf"audio_(?P<audio>{AUDIO_PATTERN})"),
    ("end_to_end", rf"e2e_(?P<inner>(?:{HEAD_PATTERN}|early{OPTION_PATTERN})_(?P<backbone>.+))"),
    ("early_fusion", rf"early(?P<option>{OPTION_PATTERN})_(?P<backbone>.+)"),
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
    def base(self) -> str:
        """The name without ``@seed<k>``."""
        return self.name.split("@")[0]

    @property
    def modality(self) -> str:
        """``visual``, ``audio`` or ``audio-visual``."""
        if self.family == "end_to_end":
            return parse_model_name(self.inner or "").modality
        families = {"cnn": "visual", "temporal": "visual", "video": "visual", "audio": "audio"}
        return families.get(self.family, "audio-visual")

    @property
    def feature_cnn(self) -> str | None:
        """The face CNN whose per-frame features the model reads: ``cnn_<backbone>`` (unseeded,
        as rules/seeds.smk trains seeded models) for temporal heads and early fusion; None for
        frame CNNs, audio models, end-to-end models and video networks (they bring their own)."""
        return f"cnn_{self.backbone}" if self.family in ("temporal", "early_fusion") else None

    @property
    def inputs(self) -> tuple[str, ...]:
        """The ``SequenceBatch`` keys the model reads (an end-to-end model: those of its sequence
        model; empty for a frame CNN and a video network)."""
        if self.family == "end_to_end":
            return parse_model_name(self.inner or "").inputs
        key = f"audio_{self.audio}" if self.family == "audio" else self.family
        return _INPUTS.get(key, ())


def parse_model_name(name: str) -> ModelName:
    """Parse ``cnn_<b>``, ``<head>_<b>``, ``audio_<mlp|gru>``, ``early<a-d>_<b>``, ``e2e_<...>_<b>``
    or a video network, each optionally followed by ``@seed<k>``."""
    seeded = re.fullmatch(rf"(?P<base>.+)@seed(?P<seed>{SEED_PATTERN})", name)
    base = seeded["base"] if seeded else name
    for family, pattern in _PATTERNS:
        m = re.fullmatch(pattern, base)
        if m:
            return ModelName(name, family, **m.groupdict(), seed=int(seeded["seed"]) if seeded else None)
    raise AvferError(
        f"model name {name!r} is not cnn_<backbone>, <head>_<backbone>, audio_mlp, audio_gru,"
        " early<a-d>_<backbone>, e2e_<head or early option>_<backbone> or a video network ("
        + ", ".join(VIDEO_MODEL_NAMES)
        + ")"
    )
