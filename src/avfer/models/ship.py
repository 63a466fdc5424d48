"""Ship a trained face model as package data: ``python -m avfer.models.ship results/face_model``.

Writes the fp16 weights and their catalogue entry (:mod:`avfer.models.zoo`): sha256, crop,
metrics and the accuracy of the fixed reference subset that tests re-score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from avfer.io.atomic import write_json
from avfer.models.zoo import CARD, DEFAULT_MODEL, catalogue, ship_model


def reference_accuracy(
    name: str, fer_csv: str | Path, labels_csv: str | Path, n: int = 500
) -> dict[str, Any]:
    """Accuracy of shipped model ``name`` on the first ``n`` FER+ PrivateTest images (row order):
    the fixed subset a test re-scores within 1.5 points."""
    import numpy as np
    import torch

    from avfer.bundle import named_bundle
    from avfer.data.ferplus import read_ferplus
    from avfer.labels import EMOTIONS
    from avfer.train.face_model import image_logits

    images, rows, _ = read_ferplus(fer_csv, labels_csv, 48, 1)
    idx = np.flatnonzero((rows["split"] == "test").to_numpy())[:n]
    logits = image_logits(named_bundle(name).face_model, images[idx], torch.device("cpu"))
    y = np.array([EMOTIONS.index(x) for x in rows["label"].to_numpy()[idx]])
    subset = f"first {n} FER+ PrivateTest images in row order"
    return {"n": int(len(idx)), "accuracy": float((logits.argmax(1) == y).mean()), "subset": subset}


def main(argv: list[str] | None = None) -> None:
    """``python -m avfer.models.ship results/face_model``: ship a trained face model as package data
    (fp16 weights + catalogue entry with its crop, metrics and the reference subset's accuracy)."""
    import argparse

    from avfer.faces.align import HAAR_BOX

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("run", type=Path, help="folder with model.pt and metrics.json of train_face_model")
    ap.add_argument("--name", default=DEFAULT_MODEL)
    ap.add_argument("--config", type=Path, default=Path("config/face_model.yaml"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets")
    args = ap.parse_args(argv)
    from avfer.config import load_config

    cfg = load_config(args.config)["face_model"]
    metrics = json.loads((args.run / "metrics.json").read_text())
    ck = next((d for d in cfg["datasets"] if d["format"] == "ckplus"), None)
    size = int(cfg["input_size"])
    info = {
        # FER2013's images are loose Haar boxes: the calibrated Haar-style box, 10 px padding
        "crop": {
            "mode": "box_square",
            "size": size,
            "pad": 10.0,
            "box_scale": HAAR_BOX[0],
            "box_shift": HAAR_BOX[1],
        },
        "metrics": {
            k: {
                "accuracy": v["ours"]["accuracy"],
                "uar": v["ours"]["uar"],
                "n": v["ours"]["n"],
                "role": v["role"],
            }
            for k, v in metrics.items()
            if isinstance(v, dict) and "ours" in v
        },
        "logit_adjustment_tau": metrics["logit_adjustment"]["tau"],
        "ckplus_split": {"subject_split": ck["subject_split"], "split_seed": ck.get("split_seed", 0)}
        if ck
        else None,
        "recipe": f"{args.config} (snakemake --configfile {args.config} results/face_model/model.pt)",
    }
    file = ship_model(args.run / "model.pt", args.name, args.out, info)
    ferplus = next(d for d in cfg["datasets"] if d["format"] == "ferplus")
    ref = reference_accuracy(args.name, ferplus["path"], ferplus["labels"])
    card = json.loads((args.out / CARD).read_text())
    card[args.name]["reference"] = ref
    write_json(args.out / CARD, card)
    catalogue.cache_clear()
    print(f"shipped {file} ({file.stat().st_size / 1e6:.1f} MB), reference {ref}")


if __name__ == "__main__":
    main()
