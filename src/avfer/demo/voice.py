"""Speech-like audio for the demo dataset (16 kHz mono), with group-specific prosody.

A source-filter model: a glottal pulse train at a time-varying F0, shaped by a spectral-tilt
low-pass, gated by a syllable envelope, passed through three formant resonators (a vowel
per syllable), plus aspiration noise, consonant noise bursts and low background noise.
Each voice group has its own pitch level / contour, loudness, onset sharpness and speaking
rate; per-clip speaker jitter (F0 x0.9-1.1, formants x0.9-1.1, rate x0.85-1.15, level
+-2.5 dB) makes neighbouring groups overlap a little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, sosfilt

SR = 16000
VOICE_GROUPS: tuple[str, ...] = ("flat", "loud", "high_fast", "low_slow")


@dataclass(frozen=True)
class Prosody:
    """Prosody of a voice group (before per-clip speaker jitter)."""

    f0: tuple[float, float]  # base F0 range, Hz (one value drawn per clip)
    slope_st: float  # F0 change across a phrase, semitones (+ rising, - falling)
    accent_st: float  # per-syllable pitch accent spread, semitones
    wobble_st: float  # slow random F0 drift, semitones
    rate: float  # syllables per second
    level_db: float  # RMS of the active speech, dBFS
    attack_s: float  # syllable onset time (short = sharp)
    pause_prob: float  # chance of a pause after each syllable
    pause_s: tuple[float, float]  # pause length range
    tilt_hz: float  # glottal low-pass corner: higher = brighter, pressed voice
    breath: float  # aspiration noise relative to voicing


PROSODY: dict[str, Prosody] = {
    "flat": Prosody((120, 150), 0.0, 0.5, 0.3, 4.0, -22, 0.04, 0.08, (0.2, 0.4), 1500, 0.05),
    "loud": Prosody((170, 200), -1.0, 1.5, 0.8, 5.0, -14, 0.008, 0.08, (0.15, 0.3), 3200, 0.03),
    "high_fast": Prosody((250, 300), 5.0, 2.0, 1.0, 7.0, -19, 0.02, 0.05, (0.1, 0.2), 2000, 0.06),
    "low_slow": Prosody((90, 110), -4.0, 0.6, 0.4, 2.5, -29, 0.07, 0.35, (0.35, 0.7), 1000, 0.12),
}

# Vowel formants F1, F2, F3 (Hz), adult average.
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_BANDWIDTHS = (80.0, 110.0, 150.0)


@dataclass(frozen=True)
class _Syllable:
    start: int  # sample index
    length: int
    vowel: int
    amp: float
    pitch_st: float  # F0 target relative to the speaker base, semitones


def _resonators(formants: np.ndarray) -> np.ndarray:
    """Cascade of unity-DC-gain two-pole resonators (Klatt), as scipy ``sos``."""
    rows = []
    for f, bw in zip(formants, _BANDWIDTHS, strict=True):
        r = np.exp(-np.pi * bw / SR)
        a1, a2 = -2 * r * np.cos(2 * np.pi * f / SR), r * r
        rows.append([1 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])
    return np.array(rows)


def _schedule(p: Prosody, n: int, rate: float, rng: np.random.Generator) -> list[_Syllable]:
    """Syllables (with pauses) filling ``n`` samples; pitch targets follow the phrase slope."""
    syllables: list[_Syllable] = []
    t = rng.uniform(0.05, 0.25)
    phrase: list[tuple[float, float, int, float]] = []
    end = n / SR - 0.12

    def close_phrase() -> None:
        for k, (start, length, vowel, amp) in enumerate(phrase):
            pos = k / max(len(phrase) - 1, 1) - 0.5
            pitch = p.slope_st * pos + p.accent_st * rng.standard_normal()
            syllables.append(_Syllable(int(start * SR), int(length * SR), vowel, amp, pitch))
        phrase.clear()

    while t < end:
        period = 1.0 / rate
        length = min(period * rng.uniform(0.5, 0.7), end + 0.1 - t)
        phrase.append((t, length, int(rng.integers(len(_VOWELS))), rng.uniform(0.6, 1.0)))
        t += period * rng.uniform(0.85, 1.15)
        if rng.random() < p.pause_prob:
            close_phrase()
            t += rng.uniform(*p.pause_s)
    close_phrase()
    return syllables


def _envelope(length: int, attack: float, amp: float) -> np.ndarray:
    """Syllable envelope: raised-cosine attack, a vowel nucleus decaying to half, and a
    raised-cosine release (50 ms or less), so syllables stand out as energy peaks."""
    na = max(1, min(int(attack * SR), length // 2))
    nr = max(1, min(int(0.05 * SR), length - na))
    env = amp * np.linspace(1.0, 0.5, length)
    env[:na] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(na) / na)
    env[length - nr :] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(nr) / nr)
    return env


def _pulse_train(f0: np.ndarray) -> np.ndarray:
    """Unit impulses at each glottal period, split linearly between neighbouring samples."""
    phase = np.cumsum(f0) / SR
    k = np.flatnonzero(np.diff(np.floor(phase)) > 0) + 1
    frac = (phase[k] - np.floor(phase[k])) / (f0[k] / SR)  # how far past the crossing
    frac = np.clip(frac, 0, 1)
    out = np.zeros(len(f0) + 1)
    np.add.at(out, k, 1 - frac)
    np.add.at(out, np.maximum(k - 1, 0), frac)
    return out[: len(f0)]


def synth_voice(group: str, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Synthesise ``n_samples`` of speech-like audio at :data:`SR` Hz (float32, +-1)."""
    if group not in PROSODY:
        raise ValueError(f"unknown voice group {group!r}")
    p = PROSODY[group]
    f0_base = rng.uniform(*p.f0) * rng.uniform(0.9, 1.1)
    formant_scale = rng.uniform(0.9, 1.1)
    rate = p.rate * rng.uniform(0.85, 1.15)
    level = p.level_db + rng.uniform(-2.5, 2.5)
    syllables = _schedule(p, n_samples, rate, rng)

    # F0 contour: syllable targets, smoothly interpolated, plus slow wobble and jitter.
    centres = [s.start + s.length / 2 for s in syllables] or [n_samples / 2]
    targets = [s.pitch_st for s in syllables] or [0.0]
    st = np.interp(np.arange(n_samples), centres, targets)
    wobble = gaussian_filter1d(rng.standard_normal(n_samples // 160 + 2), 8.0)
    st += p.wobble_st * np.interp(np.arange(n_samples) / 160, np.arange(len(wobble)), wobble) * 4
    f0 = f0_base * 2 ** (st / 12) * (1 + 0.01 * rng.standard_normal(n_samples))
    source = sosfilt(butter(2, p.tilt_hz, fs=SR, output="sos"), _pulse_train(f0))

    speech = np.zeros(n_samples)
    active = np.zeros(n_samples)
    by_vowel = np.zeros((len(_VOWELS), n_samples))
    fricative = butter(4, [2500, 6500], "bandpass", fs=SR, output="sos")
    noise_hi = sosfilt(fricative, rng.standard_normal(n_samples))
    for s in syllables:
        sl = slice(s.start, s.start + s.length)
        env = _envelope(s.length, p.attack_s, s.amp)
        by_vowel[s.vowel, sl] += env
        active[sl] = np.maximum(active[sl], env)
        if rng.random() < 0.7:  # consonant: short decaying noise burst before the vowel
            nb = int(rng.uniform(0.02, 0.07) * SR)
            b0 = max(0, s.start - nb // 2)
            nb = min(nb, n_samples - b0)
            burst = np.exp(-np.arange(nb) / (0.3 * nb)) * s.amp * rng.uniform(0.1, 0.3)
            speech[b0 : b0 + nb] += burst * noise_hi[b0 : b0 + nb]
    aspiration = p.breath * rng.standard_normal(n_samples)
    for v in range(len(_VOWELS)):
        if by_vowel[v].any():
            excitation = by_vowel[v] * (source * 40 + aspiration)
            speech += sosfilt(_resonators(_VOWELS[v] * formant_scale), excitation)
    speech = np.diff(speech, prepend=0.0)  # lip radiation: +6 dB/octave
    speech = sosfilt(butter(1, 70, "highpass", fs=SR, output="sos"), speech)

    voiced = active > 0.2
    rms = np.sqrt(np.mean(speech[voiced] ** 2)) if voiced.any() else 1.0
    speech *= 10 ** (level / 20) / max(rms, 1e-9)
    background = sosfilt(butter(1, 3000, fs=SR, output="sos"), rng.standard_normal(n_samples))
    speech += background * 10 ** (rng.uniform(-62, -54) / 20)
    peak = np.max(np.abs(speech))
    if peak > 0.98:
        speech *= 0.98 / peak
    return speech.astype(np.float32)
