"""Memory and time at scale: peak RSS and wall time of each stage at 1x, 10x and 100x a
synthetic dataset, the Snakemake DAG of a 40,000-clip sample sheet, and HDF5 frame reads.

Every (stage, size) runs in its own Python process, which reports its own peak RSS
(``ru_maxrss``), so the numbers do not mix. Stages:

- ``faces``: the face stage on one blank video (no face, 64 px) of 36 s x size (100x = 1 hour),
  output streamed to a face cache (keyframe every 250 frames: the decode and write path, not
  MTCNN, is what grows with the clip);
- ``finetune``: :func:`avfer.train.cnn.finetune` (mini_xception 32 px grey, 1 epoch, 4 frames
  per clip) on a synthetic face cache of 20 x size clips of 20 frames (48 px), then predicting
  every frame of every clip;
- ``features``: :func:`avfer.train.cnn_predict.extract_features` of that face cache (one shard);
- ``sequence``: :func:`avfer.train.sequence.train_sequence_model` (GRU, window 16) for 1 epoch
  on a synthetic 512-d feature cache of 20 x size clips (20-200 frames), then predicting all;
- ``dag``: ``snakemake -n`` of a 40,000-clip sample sheet (``--dag-clips``; pre-made, empty
  media files) and its job count;
- ``parse``: parsing the workflow (``snakemake --list-rules``, what every cluster job pays) on a
  ``dfew`` tree of 40,000 (``--dag-clips``) empty clip files: no stat of the dataset's files;
- ``read``: random single-frame vs sequential reads of the 100x face cache.

    python bench/scale.py [--sizes 1 10 100] [--stages faces finetune features sequence dag parse read]
                          [--dag-clips 40000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASE_CLIPS = 20
SPLITS = (("train", 0.6), ("val", 0.2), ("test", 0.2))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _split_of(i: int, n: int) -> str:
    return "train" if i < 0.6 * n else "val" if i < 0.8 * n else "test"


def write_face_cache(path: Path, clips: int, frames: int = 20, size: int = 48) -> None:
    """A face cache of ``clips`` clips of ``frames`` noisy frames (label-dependent brightness)."""
    from avfer.faces.pipeline import face_layout
    from avfer.io import ClipWriter, h5_writer
    from avfer.labels import EMOTIONS

    rng = np.random.default_rng(0)
    with h5_writer(path, "faces", creator="bench.scale") as f:
        for c in range(clips):
            label = EMOTIONS[c % len(EMOTIONS)]
            out = ClipWriter(f, f"c{c:06d}", face_layout(size), split=_split_of(c, clips), label=label)
            base = 40 + 25 * (c % len(EMOTIONS))
            faces = np.clip(base + rng.normal(0, 20, (frames, size, size, 3)), 0, 255).astype(np.uint8)
            out.append(
                {
                    "faces": faces,
                    "frame_index": np.arange(frames, dtype=np.int32),
                    "timestamp": np.arange(frames) / 25.0,
                    "source_time": np.arange(frames) / 25.0,
                    "box": np.zeros((frames, 4), np.float32),
                    "landmarks": np.zeros((frames, 5, 2), np.float32),
                    "prob": np.ones(frames, np.float32),
                    "has_face": np.ones(frames, bool),
                }
            )
            out.close("ok", frames=frames, faces=frames)


def write_feature_cache(path: Path, clips: int, dim: int = 512) -> None:
    """A feature cache of ``clips`` clips of 20-200 frames of ``dim``-d features."""
    from avfer.io import h5_writer, write_clip
    from avfer.labels import EMOTIONS

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (len(EMOTIONS), dim)).astype(np.float32)
    with h5_writer(path, "features", creator="bench.scale") as f:
        for c in range(clips):
            k = c % len(EMOTIONS)
            n = int(rng.integers(20, 201))
            x = centers[k] + rng.normal(0, 2, (n, dim)).astype(np.float32)
            data = {"features": x, "mask": rng.random(n) > 0.1}
            write_clip(f, f"c{c:06d}", data, split=_split_of(c, clips), label=EMOTIONS[k])


def stage_faces(work: Path, size: int) -> dict:
    import pandas as pd

    from avfer.faces import FaceSettings
    from avfer.faces.cache import build_face_shard

    seconds = 36 * size
    video = work / f"blank_{seconds}s.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"color=c=gray:s=64x64:d={seconds}:r=25", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", str(video)],
        check=True,
    )  # fmt: skip
    rows = pd.DataFrame(
        [{"clip_id": "long", "path": str(video), "split": "train", "label": "", "shard": "train-000"}]
    )
    cfg = {"device": "cpu", "keyframe_every": 250, "min_face_size": 40}
    t0 = time.perf_counter()
    build_face_shard(rows, work / "video_faces.h5", FaceSettings.from_config(cfg), threads=2)
    return {"what": f"clip of {seconds} s ({seconds * 25} frames)", "seconds": time.perf_counter() - t0}


def stage_finetune(work: Path, size: int) -> dict:
    from avfer.config import validate_config
    from avfer.train.cnn import finetune

    cache = work / "faces.h5"
    cnn = validate_config({})["cnn"]
    cnn = {
        **cnn,
        "input_size": 32,
        "in_chans": 1,
        "device": "cpu",
        "frames_per_clip": 4,
        "val_frames_per_clip": 4,
    }
    cnn["train"] = {**cnn["train"], "epochs": 1, "batch_size": 64, "patience": 0}
    t0 = time.perf_counter()
    out = work / "cnn"
    out.mkdir(exist_ok=True)
    finetune(
        "mini_xception", [cache], cnn, model_path=out / "model.pt", predictions_path=out / "p.csv",
        metrics_path=out / "m.json", seed=0, threads=2,
    )  # fmt: skip
    return {"what": f"{BASE_CLIPS * size} clips x 20 frames", "seconds": time.perf_counter() - t0}


def stage_features(work: Path, size: int) -> dict:
    from avfer.train.cnn_predict import extract_features

    t0 = time.perf_counter()
    counts = extract_features(
        work / "cnn" / "model.pt", work / "faces.h5", work / "feat.h5", device="cpu", threads=2
    )
    return {"what": f"{counts['clips']} clips, {counts['faces']} frames", "seconds": time.perf_counter() - t0}


def stage_sequence(work: Path, size: int) -> dict:
    from avfer.train.sequence import train_sequence_model

    cache = work / "seqfeat.h5"
    write_feature_cache(cache, BASE_CLIPS * size)
    args = {"hidden_size": 32, "num_layers": 1, "dropout": 0.1, "pooling": "mean", "attention_dim": 16}
    args |= {"window": 16, "stride": 8}
    train = {"epochs": 1, "lr": 0.003, "weight_decay": 0.0, "batch_size": 16, "patience": 0}
    train |= {"balanced_loss": False, "amp": False, "grad_clip": 0, "score": "accuracy"}
    out = work / "gru"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    train_sequence_model(
        "gru_bench", model_args=args, train=train, out_model=out / "m.pt", out_predictions=out / "p.csv",
        out_metrics=out / "m.json", feature_paths=[str(cache)], seed=0, threads=2,
    )  # fmt: skip
    return {"what": f"{BASE_CLIPS * size} clips, 512-d", "seconds": time.perf_counter() - t0}


def stage_read(work: Path, size: int) -> dict:
    import h5py

    with h5py.File(work / "faces.h5", "r") as f:
        groups = [f["clips"][k]["faces"] for k in list(f["clips"])]
        n = sum(len(g) for g in groups)
        rng = np.random.default_rng(0)
        picks = [(int(c), int(rng.integers(len(groups[c])))) for c in rng.integers(len(groups), size=2000)]
        t0 = time.perf_counter()
        for c, t in picks:
            groups[c][t]
        rand = len(picks) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for g in groups:
            g[()]
        seq = n / (time.perf_counter() - t0)
    return {"what": f"random {rand:.0f} frames/s, sequential {seq:.0f} frames/s ({n} frames)", "seconds": 0.0}


def stage_dag(work: Path, size: int, clips: int = 40000) -> dict:
    import pandas as pd

    media = work / "media"
    media.mkdir(exist_ok=True)
    rows = []
    for i in range(clips):
        split = _split_of(i, clips)
        p = media / f"clip{i:05d}.mp4"
        p.touch()
        rows.append({"path": str(p), "split": split, "label": "Happy" if split != "test" else ""})
    pd.DataFrame(rows).to_csv(work / "manifest.csv", index=False)
    results = work / "results"
    cfg = {
        "results": str(results),
        "dataset": {"format": "manifest", "manifest": str(work / "manifest.csv"), "shard_size": 50},
    }
    (work / "config.yaml").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    sys.path.insert(0, str(REPO / "src"))
    from avfer.config import validate_config
    from avfer.datasets.sheet import build_sample_sheet, write_sample_sheet

    t0 = time.perf_counter()
    write_sample_sheet(build_sample_sheet(validate_config(cfg)["dataset"]), results / "samples.csv")
    sheet_s = time.perf_counter() - t0
    snakemake = Path(sys.executable).with_name("snakemake")
    t0 = time.perf_counter()
    # `--quiet rules`: the job stats without one block per job (a bare -q hides the stats too)
    cmd = [str(snakemake), "-n", "--quiet", "rules", "--cores", "1"]
    cmd += ["--configfile", str(work / "config.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    dag_s = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    jobs = dry_run_jobs(proc.stdout + "\n" + proc.stderr)
    return {"what": f"{clips} clips, sheet built in {sheet_s:.1f} s; {jobs}", "seconds": dag_s}


def stage_parse(work: Path, size: int, clips: int = 40000) -> dict:
    """Seconds to parse the workflow with a ``dfew`` dataset of ``clips`` empty files."""
    root = work / "dfew"
    folds = root / "EmoLabel_DataSplit" / "test(single-labeled)"
    folds.mkdir(parents=True, exist_ok=True)
    for k in range(1, 6):
        rows = "".join(f"{i + 1},{1 + i % 7}\n" for i in range(clips) if i % 5 == k - 1)
        (folds / f"set_{k}.csv").write_text("video_name,label\n" + rows)
    for i in range(clips):
        part = root / "Clip" / "original" / f"part_{i // 1000:02d}"
        if i % 1000 == 0:
            part.mkdir(parents=True, exist_ok=True)
        (part / f"{i + 1:05d}.mp4").touch()
    cfg = {"results": str(work / "results"), "dataset": {"format": "dfew", "root": str(root), "folds": 5}}
    (work / "dfew.yaml").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--list-rules"]
    cmd += ["--configfile", str(work / "dfew.yaml")]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    what = f"snakemake --list-rules, dfew tree of {clips} empty clips ({cpu:.1f} s CPU)"
    return {"what": what, "seconds": seconds}


def dry_run_jobs(text: str) -> str:
    """The job count in the output of ``snakemake -n``: the ``total`` row of its last job-stats
    table ("0 jobs" when there is nothing to do, "? jobs" when it has no table); "before
    checkpoints" when checkpoints will add jobs."""
    totals = re.findall(r"^\s*total\s+(\d+)\s*$", text, re.MULTILINE)
    if not totals:
        return "0 jobs" if "Nothing to be done" in text else "? jobs"
    return f"{totals[-1]} jobs" + (" before checkpoints" if "checkpoint jobs" in text else "")


STAGES = {
    "faces": stage_faces,
    "finetune": stage_finetune,
    "features": stage_features,
    "sequence": stage_sequence,
    "read": stage_read,
    "dag": stage_dag,
    "parse": stage_parse,
}


def child(stage: str, work: Path, size: int, dag_clips: int) -> None:
    sys.path.insert(0, str(REPO / "src"))
    if stage == "finetune" and not (work / "faces.h5").exists():
        write_face_cache(work / "faces.h5", BASE_CLIPS * size)
    extra = (dag_clips,) if stage in ("dag", "parse") else ()
    out = STAGES[stage](work, size, *extra)
    out["rss_mb"] = _rss_mb()
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument(
        "--stages", nargs="+", default=["faces", "finetune", "features", "sequence", "read", "dag", "parse"]
    )
    ap.add_argument("--dag-clips", type=int, default=40000, help="clips of the dag stage's sample sheet")
    ap.add_argument("--child", nargs=3, metavar=("STAGE", "WORK", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), int(args.child[2]), args.dag_clips)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="avfer-scale-") as td:
        for size in args.sizes:
            work = Path(td) / f"x{size}"
            work.mkdir()
            for stage in args.stages:
                if stage in ("dag", "parse") and size != args.sizes[-1]:
                    continue  # one DAG / parse (--dag-clips, 40,000) is enough
                if stage == "read" and size != args.sizes[-1]:
                    continue
                cmd = [sys.executable, __file__, "--child", stage, str(work), str(size)]
                cmd += ["--dag-clips", str(args.dag_clips)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"stage {stage} at {size}x failed")
                res = json.loads(line[7:])
                rows.append((stage, size, res))
                print(
                    f"{stage:9s} {size:4d}x  {res['rss_mb']:8.0f} MB  {res['seconds']:8.1f} s  {res['what']}"
                )
            shutil.rmtree(work / "media", ignore_errors=True)
            shutil.rmtree(work / "dfew", ignore_errors=True)
    print(f"\n{'stage':9s} {'size':>5s} {'peak RSS':>10s} {'time':>9s}  what")
    for stage, size, res in rows:
        print(f"{stage:9s} {size:4d}x {res['rss_mb']:8.0f} MB {res['seconds']:8.1f} s  {res['what']}")


if __name__ == "__main__":
    main()
