"""Snakemake script: pre-train a CNN backbone on static expression images → model.pt, metrics.json."""

from avfer.device import job_device
from avfer.train.cnn import pretrain
from avfer.workflow import logged

with logged(snakemake.log[0], "pretrain_cnn") as log:
    cnn = {**snakemake.config["cnn"]}
    cnn["device"] = job_device(snakemake, cnn["device"], "cnn.device")
    metrics = pretrain(
        snakemake.wildcards.backbone,
        snakemake.config["pretrain"],  # params hold their result-affecting part (the rerun trigger)
        cnn,
        model_path=snakemake.output.model,
        metrics_path=snakemake.output.metrics,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    log.info("pretrain %s: val accuracy %.4f", snakemake.wildcards.backbone, metrics["val"]["accuracy"])
