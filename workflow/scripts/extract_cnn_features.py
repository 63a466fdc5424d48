"""Snakemake script: per-frame CNN features (params.features: the layer) of one shard
→ features/<backbone>/<shard>.h5."""

from avfer.device import job_device
from avfer.train.cnn_predict import extract_features
from avfer.workflow import logged

with logged(snakemake.log[0], "extract_cnn_features") as log:
    counts = extract_features(
        snakemake.input.model,
        snakemake.input.faces,
        snakemake.output.h5,
        batch_size=snakemake.config["cnn"]["eval_batch_size"],  # inference settings: not in params
        device=job_device(snakemake, snakemake.config["cnn"]["device"], "cnn.device"),
        threads=snakemake.threads,
        features=snakemake.params.features,
    )
    log.info("%s: %s", snakemake.output.h5, counts)
