"""Decode a clip's audio track to a mono float32 signal through an ffmpeg pipe (no wav files).

Besides the samples, :func:`decode_audio` reports the container time of the first decoded
sample (read from ffmpeg's ``ashowinfo`` filter in the same call, with ``-copyts`` so it is on the
same timeline as ffprobe's stream start times), so the caller can place the
signal on the video's frame grid exactly, whatever the codec's priming/pre-skip or the
muxer's audio delay.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avfer.errors import AvferError

_PTS = re.compile(r"Parsed_ashowinfo.*?\bpts_time:\s*(-?[0-9.]+(?:e-?\d+)?)")
_ERROR_LEVELS = ("[error]", "[fatal]", "[panic]")
_MAPPING = re.compile(r"Stream #0:(\d+)\S* -> #0:0 \((\w+)")
_COMPONENT = re.compile(r"^\[([^\]]+?) @ 0x[0-9a-f]+\]")


class AudioDecodeError(AvferError):
    """An audio track that ffmpeg cannot decode (the message names the file)."""


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded mono signal and where it starts on the container's timeline."""

    signal: np.ndarray
    """float32 samples in [-1, 1]."""
    sample_rate: int
    start_time: float | None
    """Container time (s) of the first sample; None when ffmpeg reported no frame."""
    errors: tuple[str, ...] = ()
    """ffmpeg error lines from a decode that nevertheless produced samples."""

    @property
    def duration(self) -> float:
        """Length of the signal in seconds."""
        return len(self.signal) / self.sample_rate


def _ffmpeg_cmd(path: Path, sample_rate: int) -> list[str]:
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info",
        "-threads", "1", "-copyts", "-i", str(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-af", "ashowinfo", "-ac", "1", "-ar", str(int(sample_rate)),
        "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1",
    ]  # fmt: skip


def _audio_errors(stderr: str) -> list[str]:
    """ffmpeg's error lines about the decoded audio stream (the ``level`` log flag tags each line).

    Lines from other components (e.g. the video decoder, which ffmpeg runs while probing the
    input) are ignored; ``Stream mapping`` names the audio stream's index and decoder.
    """
    if not any(tag in stderr for tag in _ERROR_LEVELS):
        return []
    mapping = _MAPPING.search(stderr)
    index, decoder = (mapping.group(1), mapping.group(2)) if mapping else (None, None)
    out: list[str] = []
    for line in stderr.splitlines():
        tag = next((t for t in _ERROR_LEVELS if t in line), None)
        if tag is None:
            continue
        component_match = _COMPONENT.match(line.strip())
        component = component_match.group(1) if component_match else None
        msg = line.split(tag, 1)[1].strip()
        about_stream = index is not None and re.search(rf"(#0:{index}\b|stream (= )?{index}\b)", msg)
        if (component in (None, decoder) or about_stream) and msg and msg not in out:
            out.append(msg)
    return out


def decode_audio(path: str | Path, sample_rate: int = 16000) -> DecodedAudio:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate`` Hz.

    Raises :class:`AudioDecodeError` (naming the file and ffmpeg's first error) when ffmpeg
    fails. A decode that recovers from errors returns the samples it got, with ``errors`` set.
    """
    path = Path(path)
    with tempfile.TemporaryFile() as err:  # stderr to a file: one blocking read of stdout
        proc = subprocess.Popen(_ffmpeg_cmd(path, sample_rate), stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        with proc.stdout:
            raw = proc.stdout.read()
        returncode = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    errors = _audio_errors(stderr)
    if returncode != 0:
        why = errors[0] if errors else f"ffmpeg exit status {returncode}"
        raise AudioDecodeError(f"{path}: cannot decode the audio track ({why})")
    signal = np.frombuffer(raw, dtype="<f4")
    match = _PTS.search(stderr)
    start = float(match.group(1)) if match else None
    return DecodedAudio(signal=signal, sample_rate=int(sample_rate), start_time=start, errors=tuple(errors))
