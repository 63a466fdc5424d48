"""Audio models: an MLP on whole-clip openSMILE functionals and a GRU on the aligned LLDs.

Both give all-zero logits (uniform probabilities) for a clip without an audio track, so a
late fusion sees "no opinion" rather than a confident guess made from zeros.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from avfer.errors import AvferError
from avfer.labels import NUM_CLASSES
from avfer.models.temporal import TemporalClassifier

AUDIO_MODELS = ("mlp", "gru")


class FunctionalsMLP(nn.Module):
    """MLP on the clip-level functionals: ``Linear → [BatchNorm] → ReLU → Dropout`` per hidden
    layer, then a head."""

    def __init__(
        self,
        input_dim: int,
        num_classes: int = NUM_CLASSES,
        *,
        hidden_sizes: tuple[int, ...] | list[int] = (128,),
        dropout: float = 0.3,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout / 2)]
        dim = input_dim
        for size in hidden_sizes:
            norm = [nn.BatchNorm1d(size)] if batch_norm else []
            layers += [nn.Linear(dim, size), *norm, nn.ReLU(), nn.Dropout(dropout)]
            dim = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dim, num_classes)
        self.output_dim = dim

    def forward(self, functionals: Tensor, has_audio: Tensor, **_: Tensor) -> Tensor:
        """functionals (batch, functionals_dim), has_audio (batch,) bool → logits (batch, classes);
        zeros for clips without audio."""
        logits = self.head(self.body(functionals))
        return logits.masked_fill(~has_audio.unsqueeze(-1), 0.0)


def make_audio_model(name: str, dims: dict[str, int], **options: Any) -> nn.Module:
    """``mlp`` (needs ``dims["functionals"]``) or ``gru`` (needs ``dims["audio"]``, the LLD dimension).

    ``options`` go to :class:`FunctionalsMLP` or :class:`TemporalClassifier` (``modality="audio"``).
    """
    if name == "mlp":
        return FunctionalsMLP(dims["functionals"], **options)
    if name == "gru":
        return TemporalClassifier(dims["audio"], modality="audio", cell="gru", **options)
    raise AvferError(f"audio model {name!r} is not one of {', '.join(AUDIO_MODELS)}")
