"""Snakemake script: train avfer's own face model (FER+ recipe) → model.pt, metrics.json, confusion.png."""

from pathlib import Path

from avfer.device import job_device
from avfer.train.face_model import train_face_model
from avfer.workflow import logged

with logged(snakemake.log[0], "train_face_model") as log:
    cfg = snakemake.config["face_model"]  # params hold its result-affecting part (the rerun trigger)
    metrics = train_face_model(
        cfg,
        out_dir=Path(snakemake.output.model).parent,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        device=job_device(snakemake, cfg["device"], "face_model.device"),
    )
    m = metrics[f"{cfg['select_dataset']}_test"]["ours"]
    log.info("face model: %s test accuracy %.4f, UAR %.4f", cfg["select_dataset"], m["accuracy"], m["uar"])
