"""Snakemake script: fine-tune a CNN on the clip faces → model.pt, predictions.csv, metrics.json."""

from avfer.datasets.splits import read_splits
from avfer.device import job_device
from avfer.train.cnn import finetune
from avfer.workflow import logged

with logged(snakemake.log[0], "finetune_cnn") as log:
    inputs = dict(snakemake.input.items())
    cnn = {**snakemake.config["cnn"]}
    cnn["device"] = job_device(snakemake, cnn["device"], "cnn.device")
    metrics = finetune(
        snakemake.wildcards.backbone,
        list(inputs["faces"]),
        cnn,  # params hold its result-affecting part (the rerun trigger)
        model_path=snakemake.output.model,
        predictions_path=snakemake.output.predictions,
        metrics_path=snakemake.output.metrics,
        confusion_path=snakemake.output.confusion,
        init=str(inputs["init"]) if "init" in inputs else None,
        assignment=read_splits(inputs["splits"]),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    log.info(
        "cnn_%s: %s", snakemake.wildcards.backbone, {s: round(m["accuracy"], 4) for s, m in metrics.items()}
    )
