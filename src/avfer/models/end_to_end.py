"""End-to-end models: the face CNN and a sequence model (temporal head or early fusion) trained
together, as the reference thesis's "CNN + GRU end to end".

:class:`EndToEnd` starts from the two stages the pipeline trains anyway: the fine-tuned face CNN
(``models/cnn_<backbone>/model.pt``) and a sequence model trained on that CNN's frozen, cached
features (``models/<head>_<backbone>/`` or ``models/early<o>_<backbone>/``: the "RNN alone"
stage). The CNN's features are standardised with the sequence model's own training statistics
(fixed buffers), so before any end-to-end step the model gives exactly the two-stage model's
logits. Names: ``e2e_<sequence model>`` (``e2e_bgru_seresnet50``, ``e2e_earlyb_vgg16``).

The CNN sees uint8 face crops of the grid frames that have a face; ``face_index`` places each
face's features at its (sequence, frame) position of the padded batch, frames without a face
stay invalid (masked) as in the feature cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from avfer.errors import AvferError
from avfer.io.atomic import atomic_path
from avfer.models.face import FaceModel, face_model_from_spec, load_face_model
from avfer.models.specs import build_model
from avfer.models.temporal import WindowedClassifier

E2E_FORMAT = "avfer-end-to-end/1"
#: features of a standardised frame are clipped to ± this (as :class:`avfer.data.sequences.Standardizer`)
CLIP = 10.0


class EndToEnd(nn.Module):
    """``cnn`` (a :class:`FaceModel`) → standardised per-frame features → ``head`` (the sequence
    model: a :class:`WindowedClassifier` reading ``video``). The sequence model is named ``head``
    so that ``train.head_epochs`` (:func:`avfer.train.common.staged_training`) trains it alone
    first, then the CNN with it."""

    def __init__(
        self,
        cnn: FaceModel,
        head: WindowedClassifier,
        mean: Tensor,
        std: Tensor,
        *,
        frozen_batch_norm: bool = True,
        chunk: int = 256,
    ) -> None:
        super().__init__()
        self.frozen_batch_norm = frozen_batch_norm
        if "video" not in head.frame_keys:
            raise AvferError(f"{type(head).__name__} does not read per-frame CNN features")
        self.cnn, self.head, self.chunk = cnn, head, int(chunk)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def train(self, mode: bool = True) -> EndToEnd:
        """Like :meth:`nn.Module.train`; a CNN with no trainable parameter (``head_epochs``, the
        sequence model alone) stays in eval mode, and with ``frozen_batch_norm`` its batch-norm
        layers do: they normalise with the fine-tuned statistics (a batch of a few sequences holds
        the correlated frames of only a few clips) and their affine weights still train."""
        super().train(mode)
        if not any(p.requires_grad for p in self.cnn.parameters()):
            self.cnn.eval()
        elif self.frozen_batch_norm:
            for m in self.cnn.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    @property
    def window(self) -> int | None:
        """Frames per training sequence: the sequence model's window (None: whole clips)."""
        return self.head.window

    def features(self, faces: Tensor) -> Tensor:
        """Standardised CNN features ``[F, D]`` of uint8 faces ``[F, H, W, C]`` (in chunks of
        ``chunk`` faces when no gradient is needed)."""
        if torch.is_grad_enabled() or len(faces) <= self.chunk:
            f = self.cnn.forward_features(faces)
        else:
            f = torch.cat(
                [
                    self.cnn.forward_features(faces[i : i + self.chunk])
                    for i in range(0, len(faces), self.chunk)
                ]
            )
        return ((f.float() - self.mean) / self.std).clamp(-CLIP, CLIP)

    def forward(self, faces: Tensor, face_index: Tensor, video_mask: Tensor, **batch: Tensor) -> Tensor:
        """Clip (or sequence) logits ``[B, classes]``.

        Args:
            faces: ``[F, H, W, C]`` uint8, the faces of every sequence of the batch.
            face_index: ``[F]`` int64, ``b * seq_len + t`` of each face.
            video_mask: ``[B, seq_len]`` bool, True where the frame has a face.
            batch: the sequence model's other inputs (``audio``, ``audio_mask`` for early fusion).
        """
        b, t = video_mask.shape
        video = self.mean.new_zeros((b * t, len(self.mean)))
        if len(faces):
            f = self.features(faces)
            video = video.index_copy(0, face_index, f.to(video.dtype))
        return self.head(video=video.view(b, t, -1), video_mask=video_mask, **batch)


def sequence_norms(ckpt: Mapping[str, Any]) -> dict[str, tuple[Tensor, Tensor]]:
    """``{input: (mean, std)}`` of a trained sequence model's checkpoint."""
    return {k: (v["mean"], v["std"]) for k, v in ckpt["norms"].items()}


def from_stages(
    cnn_path: str | Path,
    sequence_ckpt: Mapping[str, Any],
    frozen_batch_norm: bool = True,
    features: Mapping[str, Any] | None = None,
) -> EndToEnd:
    """The end-to-end model of a fine-tuned face CNN (model.pt, read at the feature layer
    ``features``) and a sequence model trained on its features (the loaded checkpoint dict of
    ``train_sequence_model``)."""
    cnn, _ = load_face_model(cnn_path, features=features)
    head = build_model(sequence_ckpt["spec"])
    head.load_state_dict(sequence_ckpt["state_dict"])
    if not isinstance(head, WindowedClassifier):
        raise AvferError(f"{sequence_ckpt['spec']['name']}: not a sequence model over CNN features")
    dim = sequence_ckpt["spec"]["dims"]["video"]
    if dim != cnn.feature_dim:
        name = sequence_ckpt["spec"]["name"]
        raise AvferError(f"{name} reads {dim}-d features, the CNN {cnn_path} gives {cnn.feature_dim}")
    mean, std = sequence_norms(sequence_ckpt)["video"]
    return EndToEnd(cnn, head, mean, std, frozen_batch_norm=frozen_batch_norm)


def save_end_to_end(
    path: str | Path,
    model: EndToEnd,
    spec: Mapping[str, Any],
    state_dict: Mapping[str, Tensor],
    extra: Mapping[str, Any],
) -> None:
    """Atomically write an end-to-end ``model.pt``: the CNN's spec, the sequence model's spec,
    the weights of both, the audio standardisation (early fusion) and ``extra``."""
    blob = {
        "format": E2E_FORMAT,
        "cnn": dict(model.cnn.spec),
        **dict(spec),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        **dict(extra),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_end_to_end(path: str | Path) -> tuple[EndToEnd, dict[str, Any]]:
    """Rebuild an :class:`EndToEnd` (eval mode) and its checkpoint dict from ``model.pt``."""
    path = Path(path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != E2E_FORMAT:
        raise AvferError(f"{path}: not an avfer end-to-end model ({E2E_FORMAT})")
    cnn = face_model_from_spec(blob["cnn"])
    head = build_model(blob["spec"])
    dim = blob["spec"]["dims"]["video"]
    model = EndToEnd(cnn, head, torch.zeros(dim), torch.ones(dim))  # type: ignore[arg-type]
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob
