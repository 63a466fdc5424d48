"""Snakemake script: train one clip-level video network on the face caches → model.pt,
predictions.csv, metrics.json, confusion.svg."""

from avfer.datasets.splits import read_splits
from avfer.device import job_device
from avfer.train.video import train_video_model
from avfer.workflow import logged

with logged(snakemake.log[0], "train_video_model") as log:
    name = snakemake.wildcards.video_model
    section = snakemake.config["video_models"]  # device and batch size: not part of the result
    metrics = train_video_model(
        name,
        list(snakemake.input.faces),
        snakemake.params.settings,
        model_path=snakemake.output.model,
        predictions_path=snakemake.output.predictions,
        metrics_path=snakemake.output.metrics,
        confusion_path=snakemake.output.confusion,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        device=job_device(snakemake, section["device"], "video_models.device"),
        eval_batch_size=section["eval_batch_size"],
        assignment=read_splits(snakemake.input.splits),
    )
    log.info("%s: %s", name, {s: round(m["accuracy"], 4) for s, m in metrics.items()})
