"""Temporal models over per-frame sequences: GRU, bidirectional GRU, LSTM (± attention pooling).

Invalid frames (padding, frames without a face, frames without audio) never reach the
recurrent cell: :func:`compact_valid` moves each clip's valid frames to the front and the cell
runs on a ``pack_padded_sequence`` of exactly those frames, so their content cannot change the
output. Long clips are cut into windows of ``window`` frames every ``stride`` frames
(:func:`make_windows`); a clip's logits are the mean of its windows' logits
(:func:`aggregate_windows`), so training and prediction both work at clip level.
"""

from __future__ import annotations

import math
import re
from typing import Any, TypedDict

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from avfer.errors import AvferError
from avfer.labels import NUM_CLASSES
from avfer.models.names import HEAD_PATTERN


class SequenceBatch(TypedDict, total=False):
    """Inputs of one batch of clips, padded to the longest clip of the batch (``seq_len``)."""

    video: Tensor  # (batch, seq_len, video_dim) float32, standardised CNN features
    video_mask: Tensor  # (batch, seq_len) bool, True where the frame has a face
    audio: Tensor  # (batch, seq_len, audio_dim) float32, standardised openSMILE LLDs
    audio_mask: Tensor  # (batch, seq_len) bool, True where the frame has audio
    functionals: Tensor  # (batch, functionals_dim) float32, standardised clip functionals
    has_audio: Tensor  # (batch,) bool, True when the clip has an audio track


def parse_head(name: str) -> dict[str, Any]:
    """``gru`` / ``bgru`` / ``lstm`` / ``blstm`` with optional ``_att`` → constructor options."""
    m = re.fullmatch(HEAD_PATTERN, name)
    if not m:
        raise AvferError(f"temporal head {name!r} is not <b?><gru|lstm>[_att] (e.g. gru, bgru_att, lstm)")
    return {"cell": m.group(1), "bidirectional": name.startswith("b"), "attention": bool(m.group(2))}


def compact_valid(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Move the valid frames of every sequence to the front, keeping their order.

    Args:
        x: (batch, seq_len, dim) frames.
        mask: (batch, seq_len) bool, True for frames that count.

    Returns:
        ``(compact, lengths, order)``: compact (batch, seq_len, dim) with the valid frames first
        and zeros after them; lengths (batch,) number of valid frames; order (batch, seq_len)
        the original position of each compacted frame.
    """
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    compact = torch.gather(x, 1, order.unsqueeze(-1).expand_as(x))
    lengths = mask.sum(dim=1)
    keep = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
    return torch.where(keep.unsqueeze(-1), compact, torch.zeros_like(compact)), lengths, order


def masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    """Masked temporal mean pooling: h (batch, seq_len, dim), mask (batch, seq_len) → (batch, dim).

    Frames where ``mask`` is False are ignored; a sequence without valid frames pools to zeros.
    """
    h = h.masked_fill(~mask.unsqueeze(-1), 0.0)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)
    return h.sum(dim=1) / count


class AttentionPooling(nn.Module):
    """Additive attention over time: weights ``softmax(v·tanh(W h_t))`` over the valid frames."""

    def __init__(self, dim: int, attention_dim: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)
        self.output_dim = dim

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        """h (batch, seq_len, dim), mask (batch, seq_len) → pooled (batch, dim); zeros if no valid frame."""
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        any_valid = mask.any(dim=1, keepdim=True)
        scores = scores.masked_fill(~mask, float("-inf"))
        scores = torch.where(any_valid, scores, torch.zeros_like(scores))
        alpha = torch.softmax(scores, dim=1) * mask.to(h.dtype)
        return torch.einsum("bt,btd->bd", alpha, h.masked_fill(~mask.unsqueeze(-1), 0.0))


def n_windows(seq_len: int, window: int, stride: int) -> int:
    """Number of windows of ``window`` frames every ``stride`` frames covering ``seq_len`` frames."""
    return 1 if seq_len <= window else 1 + math.ceil((seq_len - window) / stride)


def make_windows(x: Tensor, window: int, stride: int) -> tuple[Tensor, int]:
    """Cut x (batch, seq_len, ...) into windows of ``window`` frames every ``stride`` frames.

    The last window is zero-padded (a padded mask is False). A sequence not longer than
    ``window`` stays one window of its own length.

    Returns:
        ``(windows, n_windows)``: windows (batch * n_windows, window, ...), clip-major.
    """
    batch, seq_len = x.shape[:2]
    n = n_windows(seq_len, window, stride)
    if n == 1:
        return x, 1
    total = window + (n - 1) * stride
    if total > seq_len:
        pad = torch.zeros((batch, total - seq_len, *x.shape[2:]), dtype=x.dtype, device=x.device)
        x = torch.cat([x, pad], dim=1)
    w = x.unfold(1, window, stride).movedim(-1, 2)  # (batch, n, window, ...)
    return w.reshape(batch * n, window, *x.shape[2:]), n


def aggregate_windows(window_logits: Tensor, window_valid: Tensor) -> Tensor:
    """Clip logits = mean of the logits of its valid windows.

    Args:
        window_logits: (batch, n_windows, classes).
        window_valid: (batch, n_windows) bool, False for windows without a valid frame.

    Returns:
        (batch, classes); all zeros (uniform probabilities) for a clip without a valid window.
    """
    return masked_mean(window_logits, window_valid)


class RecurrentEncoder(nn.Module):
    """A GRU or LSTM that reads only the valid frames of each sequence (packed)."""

    def __init__(
        self,
        input_dim: int,
        hidden_size: int = 64,
        *,
        cell: str = "gru",
        bidirectional: bool = False,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = rnn(
            input_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.num_layers, self.directions = num_layers, 2 if bidirectional else 1
        self.output_dim = hidden_size * self.directions

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Run over the valid frames of x (batch, seq_len, dim) given mask (batch, seq_len).

        Returns:
            ``(states, last)``: states (batch, seq_len, output_dim) at the original frame positions,
            zeros at invalid frames; last (batch, output_dim) the final hidden state (both
            directions), zeros for a sequence without valid frames.
        """
        batch, seq_len, _ = x.shape
        compact, lengths, order = compact_valid(x, mask)
        packed = pack_padded_sequence(
            compact, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=seq_len)
        keep = torch.arange(seq_len, device=x.device)[None, :] < lengths[:, None]
        out = out.masked_fill(~keep.unsqueeze(-1), 0.0)
        states = torch.zeros_like(out).scatter(1, order.unsqueeze(-1).expand_as(out), out)
        last = hidden.view(self.num_layers, self.directions, batch, -1)[-1]
        last = last.permute(1, 0, 2).reshape(batch, self.output_dim)
        return states, last.masked_fill((lengths == 0).unsqueeze(-1), 0.0)


class WindowedClassifier(nn.Module):
    """Base class: windows the per-frame inputs, classifies each window, averages per clip.

    Subclasses set ``frame_keys`` (per-frame inputs, windowed), ``mask_keys`` (a window or clip
    counts when any of these masks has a valid frame) and implement :meth:`classify`.
    """

    frame_keys: tuple[str, ...] = ()
    mask_keys: tuple[str, ...] = ()

    def __init__(self, window: int | None = None, stride: int | None = None) -> None:
        super().__init__()
        if window is not None and window < 1:
            raise AvferError(f"window must be at least 1 frame, got {window}")
        self.window, self.stride = window, stride or window

    def classify(self, **batch: Tensor) -> Tensor:
        """Logits (batch, classes) of (windows of) clips given a :class:`SequenceBatch`."""
        raise NotImplementedError

    def forward(
        self, window_clip: Tensor | None = None, window_valid: Tensor | None = None, **batch: Tensor
    ) -> Tensor:
        """Clip logits (batch, classes) from a :class:`SequenceBatch` with per-frame inputs
        (batch, seq_len, dim); clips with no valid frame get all-zero logits.

        A clip's windows are those that start before its last valid frame is covered (so the
        result does not depend on how much the batch pads it) and hold a valid frame. Windows
        cut beforehand (by the dataset, :func:`clip_windows`: one row per window) come with
        ``window_clip`` (windows,) the clip of each window and ``window_valid`` (windows,).
        """
        if window_clip is not None and window_valid is not None:
            logits = self.classify(**batch)  # (windows, classes)
            n_clips = int(window_clip.max()) + 1 if len(window_clip) else 0
            w = window_valid.to(logits.dtype)[:, None]
            sums = logits.new_zeros((n_clips, logits.shape[1])).index_add_(0, window_clip, logits * w)
            counts = logits.new_zeros((n_clips, 1)).index_add_(0, window_clip, w).clamp(min=1)
            return sums / counts
        batch = pad_empty(batch, self.frame_keys, dim=1)
        frame_valid = torch.stack([batch[k] for k in self.mask_keys]).any(dim=0)  # (batch, seq_len)
        size, seq_len = frame_valid.shape
        n = 1
        if self.window is not None and seq_len > self.window:
            stride = self.stride or self.window
            n, valid = window_validity(frame_valid, self.window, stride)
            batch = {
                k: make_windows(v, self.window, stride)[0]
                if k in self.frame_keys
                else v.repeat_interleave(n, dim=0)
                for k, v in batch.items()
            }
        else:
            valid = frame_valid.any(dim=1, keepdim=True)
        logits = self.classify(**batch)
        return aggregate_windows(logits.view(size, n, -1), valid)


def pad_empty(inputs: dict[str, Tensor], frame_keys: tuple[str, ...], dim: int) -> dict[str, Tensor]:
    """``inputs`` whose per-frame inputs ``frame_keys`` have zero frames along ``dim`` (a clip that
    failed or has an empty grid) get one invalid frame (zeros, mask False), so every model sees at
    least one frame and gives such a clip its no-input output."""
    present = [k for k in frame_keys if k in inputs]
    if not present or inputs[present[0]].shape[dim] > 0:
        return inputs
    out = dict(inputs)
    for k in present:
        v = inputs[k]
        out[k] = v.new_zeros((*v.shape[:dim], 1, *v.shape[dim + 1 :]))
    return out


def window_validity(frame_valid: Tensor, window: int, stride: int) -> tuple[int, Tensor]:
    """``(n_windows, valid (batch, n_windows))`` of sequences ``frame_valid`` (batch, seq_len)
    cut by :func:`make_windows`: a window counts when it starts before the sequence's last valid
    frame is covered by the previous one (the first always) and holds a valid frame."""
    size, seq_len = frame_valid.shape
    n = n_windows(seq_len, window, stride)
    positions = torch.arange(seq_len, device=frame_valid.device) + 1
    # last valid frame + 1 (0 if none; the zero column keeps a sequence of zero frames valid)
    length = torch.nn.functional.pad(frame_valid * positions, (1, 0)).amax(dim=1)
    starts = torch.arange(n, device=frame_valid.device) * stride
    needed = (starts == 0)[None, :] | (starts[None, :] - stride + window < length[:, None])
    if n == 1:
        return 1, needed & frame_valid.any(dim=1, keepdim=True)
    has_frame = make_windows(frame_valid, window, stride)[0].any(dim=1).view(size, n)
    return n, needed & has_frame


def clip_windows(
    inputs: dict[str, Tensor],
    frame_keys: tuple[str, ...],
    mask_keys: tuple[str, ...],
    window: int,
    stride: int,
) -> tuple[dict[str, Tensor], Tensor]:
    """The windows of one clip (its per-frame inputs (seq_len, ...), clip inputs any shape):
    ``(windows, valid)``, per-frame inputs (n, window, ...) (a clip not longer than ``window``:
    (1, seq_len, ...)), clip inputs repeated (n, ...); ``valid`` (n,) bool. The same windows and
    validity as :meth:`WindowedClassifier.forward` gives the clip in any padded batch; a clip of
    zero frames is one window of one invalid frame."""
    inputs = pad_empty(inputs, frame_keys, dim=0)
    frame_valid = torch.stack([inputs[k] for k in mask_keys]).any(dim=0)[None]  # (1, seq_len)
    n, valid = window_validity(frame_valid, window, stride)
    out = {
        k: (make_windows(v[None], window, stride)[0] if k in frame_keys else v[None].repeat_interleave(n, 0))
        for k, v in inputs.items()
    }
    return out, valid[0]


class TemporalClassifier(WindowedClassifier):
    """Recurrent encoder + pooling (masked mean, last state or attention) + linear head over one
    per-frame modality (``video`` CNN features or ``audio`` LLDs)."""

    def __init__(
        self,
        input_dim: int,
        num_classes: int = NUM_CLASSES,
        *,
        modality: str = "video",
        cell: str = "gru",
        bidirectional: bool = False,
        attention: bool = False,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.2,
        pooling: str = "mean",
        attention_dim: int = 64,
        window: int | None = None,
        stride: int | None = None,
    ) -> None:
        super().__init__(window, stride)
        if pooling not in ("mean", "last"):
            raise AvferError(f"temporal pooling {pooling!r} is not one of mean, last")
        self.modality, self.pooling = modality, "attention" if attention else pooling
        self.frame_keys = (modality, f"{modality}_mask")
        self.mask_keys = (f"{modality}_mask",)
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = RecurrentEncoder(
            input_dim,
            hidden_size,
            cell=cell,
            bidirectional=bidirectional,
            num_layers=num_layers,
            dropout=dropout,
        )
        self.attention = AttentionPooling(self.encoder.output_dim, attention_dim) if attention else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.output_dim, num_classes)
        self.output_dim = self.encoder.output_dim

    def encode(self, x: Tensor, mask: Tensor) -> Tensor:
        """Pooled representation (batch, output_dim) of x (batch, seq_len, dim), mask (batch, seq_len)."""
        states, last = self.encoder(self.input_dropout(x), mask)
        if self.attention is not None:
            return self.attention(states, mask)
        return last if self.pooling == "last" else masked_mean(states, mask)

    def classify(self, **batch: Tensor) -> Tensor:
        """Logits (batch, classes) from ``batch[modality]`` (batch, seq_len, dim) and its mask."""
        return self.head(self.dropout(self.encode(batch[self.modality], batch[f"{self.modality}_mask"])))
