"""Snakemake script: fine-tune a CNN on the clip faces → model.pt, predictions.csv, metrics.json."""

from avfer.train.cnn import finetune
from avfer.workflow import logged

with logged(snakemake.log[0], "finetune_cnn") as log:
    inputs = dict(snakemake.input.items())
    metrics = finetune(
        snakemake.wildcards.backbone,
        list(inputs["faces"]),
        snakemake.params.cnn,
        model_path=snakemake.output.model,
        predictions_path=snakemake.output.predictions,
        metrics_path=snakemake.output.metrics,
        confusion_path=snakemake.output.confusion,
        init=str(inputs["init"]) if "init" in inputs else None,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    log.info("cnn_%s: val accuracy %.4f", snakemake.wildcards.backbone, metrics["val"]["accuracy"])
