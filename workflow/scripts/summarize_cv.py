"""Snakemake script: every fold's late fusion and model metrics → cv_summary.json (mean ± std)."""

from avfer.fusion.summary import cv_protocol, summarize_cv
from avfer.workflow import logged

with logged(snakemake.log[0], "summarize_cv") as log:
    runs, models = snakemake.params.runs, snakemake.params.models
    metrics = list(snakemake.input.metrics)  # run-major: every model of fold 0, then fold 1, ...
    per_model = {m: metrics[i :: len(models)] for i, m in enumerate(models)}
    protocol = cv_protocol(snakemake.params.dataset)
    result = summarize_cv(list(snakemake.input.fusion), per_model, snakemake.output.summary, protocol)
    fused = result["late_fusion"]
    log.info(
        "%d folds: late fusion test accuracy %s ± %s, uar %s ± %s",
        result["folds"],
        fused["accuracy"]["mean"],
        fused["accuracy"]["std"],
        fused["uar"]["mean"],
        fused["uar"]["std"],
    )
