"""Snakemake script: the summary table of every model and the late fusion (report, Summary)."""

from avfer.fusion import summarize_models
from avfer.workflow import logged

with logged(snakemake.log[0], "summarize_models") as log:
    truth = list(snakemake.input.truth)
    table = summarize_models(
        dict(zip(snakemake.params.models, snakemake.input.metrics, strict=True)),
        snakemake.input.fusion,
        snakemake.output.table,
        out_fallbacks=snakemake.output.fallbacks,
        predictions=dict(zip(snakemake.params.models, snakemake.input.predictions, strict=True)),
        truth=truth[0] if truth else None,
    )
    log.info("summary:\n%s", table.to_string(index=False))
