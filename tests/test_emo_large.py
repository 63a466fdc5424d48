"""The shipped ``emo_large`` feature set: avfer's reconstruction of openSMILE 2.x's emo_large.

Checks the set's layout (56 LLDs x LLD/delta/delta-delta = 168 contours, 39 functionals each =
6,552, names in openSMILE's order), that each descriptor measures what its name says (tones of
known frequency and level, a harmonic signal of known F0, the delta regression), that the
functionals summarise the LLD contours, and that espeak-ng speech goes through the cache path
onto the 25 fps grid and differs from near-silence where speech should.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.signal
import soundfile as sf
import yaml

from avfer.audio import (
    BUILTIN_SETS,
    LldExtractor,
    build_audio_shard,
    lld_centres,
    pool_to_grid,
    process_clip,
    read_audio_names,
)
from avfer.audio.lld import SHIPPED_CONFIGS
from avfer.video import grid_length

SR = 16000
ROOT = Path(__file__).resolve().parents[1]
LLDS = (
    ["pcm_LOGenergy_sma"]
    + [f"mfcc_sma[{i}]" for i in range(13)]
    + [f"pcm_fftMag_melspec_sma[{i}]" for i in range(26)]
    + ["pcm_zcr_sma", "voiceProb_sma", "F0_sma", "F0env_sma"]
    + [f"pcm_fftMag_fband{b}_sma" for b in ("0-250", "0-650", "250-650", "1000-4000")]
    + [f"pcm_fftMag_spectralRollOff{r}_sma" for r in ("25.0", "50.0", "75.0", "90.0")]
    + [f"pcm_fftMag_spectral{s}_sma" for s in ("Flux", "Centroid", "MaxPos", "MinPos")]
)
FUNCTIONALS = (
    ["range", "maxPos", "minPos", "maxameandist", "minameandist"]
    + ["linregc1", "linregc2", "linregerrA", "linregerrQ"]
    + ["qregc1", "qregc2", "qregc3", "qregerrA", "qregerrQ", "centroid"]
    + ["variance", "stddev", "skewness", "kurtosis"]
    + ["quartile1", "quartile2", "quartile3", "iqr1-2", "iqr2-3", "iqr1-3"]
    + ["percentile95.0", "percentile98.0", "zcr"]
    + ["numPeaks", "meanPeakDist", "peakMean", "peakMeanMeanDist"]
    + ["amean", "absmean", "qmean", "nzabsmean", "nzqmean", "nzgmean", "nnz"]
)


def _delta_name(name: str, order: int) -> str:
    """openSMILE's delta name: ``_de`` appended before an array index (``mfcc_sma_de[3]``)."""
    base, bracket, index = name.partition("[")
    return base + "_de" * order + bracket + index


CONTOURS = [_delta_name(n, k) for k in range(3) for n in LLDS]


@pytest.fixture(scope="module")
def emo() -> LldExtractor:
    return LldExtractor("emo_large")


def _tone(freq: float, amp: float = 0.3, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _col(lld: np.ndarray, name: str) -> np.ndarray:
    return lld[:, CONTOURS.index(name)]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """About 4 s of espeak-ng speech as a 22.05 kHz .wav."""
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("emo_large") / "speech.wav"
    text = "Happy people dance in the warm summer rain, and nobody is sad today."
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return path


def test_builtin_name_resolves_to_the_shipped_conf_everywhere(emo):
    assert emo.config_path == SHIPPED_CONFIGS / "emo_large.conf" and emo.config_path.is_file()
    assert emo.lld_window == pytest.approx(0.025)  # 25 ms frames, every 10 ms
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    feature_set = schema["properties"]["audio"]["properties"]["feature_set"]
    assert feature_set["anyOf"][0]["enum"] == list(BUILTIN_SETS)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    rel = emo.config_path.relative_to(ROOT / "src/avfer").as_posix()
    assert any(fnmatch(rel, pattern) for pattern in package_data["avfer"])  # in an installed wheel too


def test_layout_is_the_6552_emo_large_functionals_of_168_contours(emo):
    assert len(LLDS) == 56 and len(FUNCTIONALS) == 39
    assert emo.lld_names == CONTOURS
    assert emo.functional_names == [f"{c}_{f}" for c in CONTOURS for f in FUNCTIONALS]
    assert len(emo.functional_names) == 6552
    plain = LldExtractor("emo_large", lld_level="lld_sma")  # the 56 LLDs without their deltas
    assert plain.lld_names == LLDS and plain.functional_names == emo.functional_names


def test_descriptors_measure_what_their_names_say(emo):
    med = {}
    for key, freq in (("lo", 200), ("hi", 2000)):
        lld = emo(_tone(freq)).lld[5:-5]
        med[key] = {n: float(np.median(_col(lld, n))) for n in LLDS}
    for name in ("pcm_fftMag_spectralCentroid_sma", "pcm_fftMag_spectralMaxPos_sma"):
        assert med["hi"][name] == pytest.approx(2000, abs=40)  # Hz
    for r in ("25.0", "50.0", "75.0", "90.0"):
        assert med["hi"][f"pcm_fftMag_spectralRollOff{r}_sma"] == pytest.approx(2000, abs=40)
    assert med["lo"]["pcm_fftMag_spectralCentroid_sma"] == pytest.approx(200, abs=20)
    hi_band, lo_band = "pcm_fftMag_fband1000-4000_sma", "pcm_fftMag_fband0-250_sma"
    assert med["hi"][hi_band] > 1e4 * med["hi"][lo_band] and med["lo"][lo_band] > 1e4 * med["lo"][hi_band]
    assert med["hi"]["pcm_zcr_sma"] == pytest.approx(0.25, abs=0.01)  # 2 crossings per period
    assert med["lo"]["pcm_zcr_sma"] == pytest.approx(0.025, abs=0.005)
    # twice the amplitude: log energy (natural log) adds ln 4, the band energies (of the power
    # spectrum) grow 4-fold, the Mel bands (of the magnitude spectrum, as in the original) 2-fold
    quiet, loud = (np.median(emo(_tone(440, a)).lld[5:-5, :56], axis=0) for a in (0.1, 0.2))
    assert loud[0] - quiet[0] == pytest.approx(np.log(4), abs=0.01)
    band = CONTOURS.index("pcm_fftMag_fband250-650_sma")
    assert loud[band] / quiet[band] == pytest.approx(4, rel=0.01)
    mel = int(np.argmax(quiet[14:40]))  # the band holding 440 Hz: 26 bands evenly spaced in mel
    assert loud[14 + mel] / quiet[14 + mel] == pytest.approx(2, rel=0.01)
    centre = 700 * ((1 + 8000 / 700) ** ((mel + 1) / 27) - 1)
    assert 300 < centre < 600
    # F0 of a harmonic signal (cPitchACF on 25 ms frames, as in the original emo_large)
    t = np.arange(SR) / SR
    harmonic = emo((0.3 * scipy.signal.sawtooth(2 * np.pi * 300 * t)).astype(np.float32)).lld[5:-5]
    assert np.median(_col(harmonic, "F0_sma")) == pytest.approx(300, rel=0.03)
    assert np.median(_col(harmonic, "voiceProb_sma")) > 0.55  # above emo_large's voicing cutoff


def test_energy_and_mfcc_match_a_hand_computation(emo):
    """Tones whose period divides the 10 ms hop give identical frames (smoothing is a no-op):
    log energy = ln mean((pre-emphasised x) * Hamming)^2 over a 25 ms frame, and the MFCCs are
    the HTK DCT of the log Mel bands with a 22 cepstral lifter, c1..c12 first and c0 last
    (openSMILE's htkcompatible order, as in the original: the column ``mfcc_sma[12]`` holds c0)."""
    as_custom = LldExtractor(str(emo.config_path))  # window: the frame length openSMILE reports
    assert as_custom(_tone(440)).window == pytest.approx(0.025)
    t = np.arange(SR) / SR
    for freq in (200, 2000):
        x = 0.3 * np.sin(2 * np.pi * freq * t)
        frames = np.stack([x[i * 160 : i * 160 + 400] for i in range(10, 60)])
        pre = np.concatenate([frames[:, :1] * 0.03, frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
        expected = np.median(np.log(np.mean((pre * np.hamming(400)) ** 2, axis=1)))
        got = np.median(emo(x.astype(np.float32)).lld[10:-10, 0])
        assert got == pytest.approx(expected, abs=2e-3)
    x = sum(a * np.sin(2 * np.pi * f * t) for a, f in ((0.2, 400), (0.1, 1300), (0.05, 3100)))
    lld = emo(x.astype(np.float32)).lld[10:-10].astype(np.float64)
    i, j = np.arange(13)[:, None], np.arange(26)[None, :]
    dct = np.sqrt(2 / 26) * np.cos(np.pi * i * (j + 0.5) / 26)
    cep = (np.log(lld[:, 14:40]) @ dct.T) * (1 + 11 * np.sin(np.pi * np.arange(13) / 22))
    np.testing.assert_allclose(lld[:, 1:14], np.roll(cep, -1, axis=1), rtol=1e-3, atol=1e-3)


def test_deltas_and_functionals_summarise_the_contours(emo):
    x = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    x += _tone(300) * (np.arange(SR) > SR // 2)  # noise, then noise and a tone: contours move
    out = emo(x)
    lld = out.lld.astype(np.float64)
    for k in (1, 2):  # delta regression over +-2 frames of the previous order
        base = lld[:, 56 * (k - 1) : 56 * k]
        delta = (base[3:-1] - base[1:-3] + 2 * (base[4:] - base[:-4])) / 10
        np.testing.assert_allclose(lld[2:-2, 56 * k : 56 * (k + 1)], delta, atol=1e-4, rtol=1e-3)
    func = dict(zip(emo.functional_names, out.functionals.astype(np.float64), strict=True))
    # openSMILE computes full-input functionals at end of input, before the smoother (1 frame)
    # and the two delta filters (2 frames each) emit their last frames: all but the last 5
    kept = lld[:-5]
    for c in ("pcm_LOGenergy_sma", "mfcc_sma_de[3]", "pcm_fftMag_spectralCentroid_sma_de_de"):
        v = kept[:, CONTOURS.index(c)]
        assert func[f"{c}_nnz"] == np.count_nonzero(v) == len(lld) - 5
        assert func[f"{c}_amean"] == pytest.approx(v.mean(), rel=1e-4, abs=1e-4)
        assert func[f"{c}_range"] == pytest.approx(np.ptp(v), rel=1e-4)
        assert func[f"{c}_stddev"] == pytest.approx(v.std(), rel=1e-3)
        assert func[f"{c}_quartile2"] == pytest.approx(np.median(v), rel=0.02, abs=1e-3)
    assert func["pcm_LOGenergy_sma_maxPos"] == np.argmax(kept[:, 0])  # in frames
    assert func["pcm_LOGenergy_sma_minPos"] == np.argmin(kept[:, 0])
    slope = np.polyfit(np.arange(len(kept)), kept[:, 0], 1)[0]
    assert func["pcm_LOGenergy_sma_linregc1"] == pytest.approx(slope, rel=1e-3)


def test_speech_on_the_grid_and_against_silence(emo, speech, tmp_path):
    rec = process_clip(speech, emo)
    n = grid_length(sf.info(speech).duration)
    assert rec.status == "ok" and rec.lld.shape == (n, 168) and rec.functionals.shape == (6552,)
    assert rec.lld_mask.sum() >= n - 2 and np.isfinite(rec.lld).all() and np.isfinite(rec.functionals).all()
    energy = rec.lld[rec.lld_mask, 0]
    assert np.ptp(energy) > 10  # words and pauses: log energy moves by orders of magnitude
    # silence (faint noise) of the same length, through the same path
    silent = tmp_path / "silence.wav"
    quiet = 1e-4 * np.random.default_rng(1).standard_normal(int(sf.info(speech).duration * SR))
    sf.write(silent, quiet.astype(np.float32), SR)
    rest = process_clip(silent, emo)
    assert rest.status == "ok" and rest.lld.shape == (n, 168)
    sp = dict(zip(emo.functional_names, rec.functionals, strict=True))
    si = dict(zip(emo.functional_names, rest.functionals, strict=True))
    assert sp["pcm_LOGenergy_sma_amean"] > si["pcm_LOGenergy_sma_amean"] + 5
    assert sp["pcm_LOGenergy_sma_range"] > 10 * si["pcm_LOGenergy_sma_range"]
    assert sp["voiceProb_sma_amean"] > si["voiceProb_sma_amean"] + 0.05
    assert sp["voiceProb_sma_percentile98.0"] > 0.5 > si["voiceProb_sma_percentile98.0"]
    assert sp["mfcc_sma[1]_stddev"] > 3 * si["mfcc_sma[1]_stddev"]
    changed = np.abs(rec.functionals - rest.functionals) > 1e-3 * (np.abs(rest.functionals) + 1e-3)
    assert changed.mean() > 0.9


def test_tone_onset_lands_in_its_grid_frame(emo):
    """The 25 ms frames are located at their centres: a tone switched on at the start of grid
    frame 20 raises the 250-650 Hz band energy in frame 20, not one early or late."""
    t = np.arange(int(1.6 * SR)) / SR
    x = 1e-4 * np.random.default_rng(0).standard_normal(len(t))
    x[t >= 0.8] += 0.3 * np.sin(2 * np.pi * 440 * t[t >= 0.8])
    out = emo(x.astype(np.float32))
    lld, _ = pool_to_grid(out.lld, lld_centres(out.start, out.window, 0.0), 40)
    band = lld[:, CONTOURS.index("pcm_fftMag_fband250-650_sma")]
    assert int(np.argmax(band >= 0.5 * np.median(band[-10:]))) == 20


def test_emo_large_audio_cache(speech, tmp_path):
    """``audio.feature_set: emo_large`` through the cache writer: 168 LLD columns on the grid,
    6552 functionals, the names (too many for an HDF5 attribute) and the conf's hash stored."""
    rows = pd.DataFrame(
        {
            "clip_id": ["speech"],
            "path": [str(speech)],
            "split": "train",
            "label": "Happy",
            "shard": "train-000",
        }
    )
    cfg = {"feature_set": "emo_large", "lld_level": "lld", "functionals_level": "func", "sample_rate": SR}
    out = tmp_path / "emo.h5"
    assert build_audio_shard(rows, out, cfg)["status"]["ok"] == 1
    lld_names, func_names = read_audio_names(out)
    assert lld_names == CONTOURS and len(func_names) == 6552
    with h5py.File(out) as f:
        assert f["clips/speech/lld"].shape == (grid_length(sf.info(speech).duration), 168)
        assert f["clips/speech/functionals"].shape == (6552,)
        assert f.attrs["feature_set"] == "emo_large" and f.attrs["lld_window"] == pytest.approx(0.025)
        assert len(f.attrs["feature_config_sha256"]) == 64
