"""Early (feature-level) fusion of the visual and audio streams on the shared 25 fps grid.

Options (the reference's four):

* ``a``: per-frame CNN features ⊕ aligned LLDs → GRU.
* ``b``: per-frame CNN features ⊕ audio-GRU states → GRU.
* ``c``: as ``b``, but pooled over time → fully connected layers.
* ``d``: visual-GRU states ⊕ audio-GRU states → GRU.

The audio GRU (``b``-``d``) and the visual GRU (``d``) are :class:`RecurrentEncoder` s that
:func:`load_encoder` initialises from trained single-modality models; ``freeze`` keeps them
fixed (and in eval mode), otherwise they are fine-tuned. Each frame also carries two
indicator channels (has face, has audio); a frame counts when it has either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from avfer.errors import AvferError
from avfer.labels import NUM_CLASSES
from avfer.models.temporal import AttentionPooling, RecurrentEncoder, WindowedClassifier, masked_mean

EARLY_FUSION_OPTIONS: dict[str, dict[str, Any]] = {
    "a": {"video_encoder": False, "audio_encoder": False, "fuse": "gru"},
    "b": {"video_encoder": False, "audio_encoder": True, "fuse": "gru"},
    "c": {"video_encoder": False, "audio_encoder": True, "fuse": "fc"},
    "d": {"video_encoder": True, "audio_encoder": True, "fuse": "gru"},
}


class EarlyFusion(WindowedClassifier):
    """One early-fusion option over ``video`` (batch, seq_len, video_dim) and ``audio``
    (batch, seq_len, audio_dim) frames with their masks."""

    frame_keys = ("video", "video_mask", "audio", "audio_mask")
    mask_keys = ("video_mask", "audio_mask")

    def __init__(
        self,
        option: str,
        dims: Mapping[str, int],
        num_classes: int = NUM_CLASSES,
        *,
        video_encoder: Mapping[str, Any] | None = None,
        audio_encoder: Mapping[str, Any] | None = None,
        freeze: bool = True,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.2,
        pooling: str = "mean",
        fc_sizes: tuple[int, ...] | list[int] = (128,),
        window: int | None = None,
        stride: int | None = None,
    ) -> None:
        super().__init__(window, stride)
        if option not in EARLY_FUSION_OPTIONS:
            known = ", ".join(EARLY_FUSION_OPTIONS)
            raise AvferError(f"early fusion option {option!r} is not one of {known}")
        spec = EARLY_FUSION_OPTIONS[option]
        self.option, self.fuse, self.freeze, self.pooling = option, spec["fuse"], freeze, pooling
        self.video_encoder = self.audio_encoder = None
        if spec["video_encoder"]:
            self.video_encoder = RecurrentEncoder(dims["video"], **(video_encoder or {}))
        if spec["audio_encoder"]:
            self.audio_encoder = RecurrentEncoder(dims["audio"], **(audio_encoder or {}))
        v_dim = self.video_encoder.output_dim if self.video_encoder else dims["video"]
        a_dim = self.audio_encoder.output_dim if self.audio_encoder else dims["audio"]
        self.input_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        if self.fuse == "gru":
            self.encoder = RecurrentEncoder(
                v_dim + a_dim + 2, hidden_size, num_layers=num_layers, dropout=dropout
            )
            self.attention = AttentionPooling(self.encoder.output_dim) if pooling == "attention" else None
            dim = self.encoder.output_dim
            self.body: nn.Module = nn.Identity()
        else:
            layers: list[nn.Module] = []
            dim = v_dim + a_dim + 2
            for size in fc_sizes:
                layers += [nn.Linear(dim, size), nn.ReLU(), nn.Dropout(dropout)]
                dim = size
            self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dim, num_classes)
        self.output_dim = dim
        if freeze:
            for enc in self.pretrained_encoders():
                enc.requires_grad_(False)

    def pretrained_encoders(self) -> list[RecurrentEncoder]:
        """The encoders initialised from single-modality models (empty for option ``a``)."""
        return [e for e in (self.video_encoder, self.audio_encoder) if e is not None]

    def train(self, mode: bool = True) -> EarlyFusion:
        """Like :meth:`nn.Module.train`, but frozen pretrained encoders always stay in eval mode."""
        super().train(mode)
        if self.freeze:
            for enc in self.pretrained_encoders():
                enc.eval()
        return self

    def classify(self, **batch: Tensor) -> Tensor:
        """Logits (batch, classes) from video/audio (batch, seq_len, dim) and their masks (batch, seq_len)."""
        vm, am = batch["video_mask"], batch["audio_mask"]
        video, audio = self.input_dropout(batch["video"]), self.input_dropout(batch["audio"])
        v = self.video_encoder(video, vm)[0] if self.video_encoder else video.masked_fill(~vm[..., None], 0)
        a = self.audio_encoder(audio, am)[0] if self.audio_encoder else audio.masked_fill(~am[..., None], 0)
        if self.fuse == "fc":
            flags = torch.stack([vm.any(1), am.any(1)], dim=1).to(v.dtype)
            pooled = torch.cat([masked_mean(v, vm), masked_mean(a, am), flags], dim=1)
            return self.head(self.body(self.dropout(pooled)))
        frames = torch.cat([v, a, vm[..., None].to(v.dtype), am[..., None].to(v.dtype)], dim=-1)
        mask = vm | am
        states, last = self.encoder(frames, mask)
        if self.attention is not None:
            pooled = self.attention(states, mask)
        else:
            pooled = last if self.pooling == "last" else masked_mean(states, mask)
        return self.head(self.dropout(pooled))


def make_early_fusion(option: str, dims: Mapping[str, int], **options: Any) -> EarlyFusion:
    """Build early-fusion ``option`` (a-d) for ``dims = {"video": D_cnn, "audio": D_lld}``.

    ``options`` go to :class:`EarlyFusion` (e.g. ``audio_encoder={"hidden_size": 32}`` must match the
    trained audio GRU whose weights :func:`load_encoder` copies in).
    """
    return EarlyFusion(option, dims, **options)


def load_encoder(encoder: nn.Module, state_dict: Mapping[str, Tensor], prefix: str = "encoder.") -> None:
    """Copy the ``prefix``-ed weights of a trained model's ``state_dict`` into ``encoder``."""
    sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not sub:
        raise AvferError(f"the pretrained model has no weights under {prefix!r}")
    try:
        encoder.load_state_dict(sub)
    except RuntimeError as exc:
        raise AvferError(f"pretrained encoder does not match the early-fusion encoder: {exc}") from exc
