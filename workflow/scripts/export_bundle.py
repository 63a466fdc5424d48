"""Snakemake script: package the trained run → results/bundle/ (bundle.json + model files)."""

from avfer.export import export_run
from avfer.workflow import logged

with logged(snakemake.log[0], "export_bundle") as log:
    out = export_run(
        snakemake.input.face,
        snakemake.output.bundle,
        faces=snakemake.params.faces,
        aggregate=snakemake.params.aggregate,
        models=dict(zip(snakemake.params.models, snakemake.input.models, strict=True)),
        cnns=dict(zip(snakemake.params.cnns, snakemake.input.cnns, strict=True)),
        audio=snakemake.params.audio,
        fusion=snakemake.input.fusion,
        features=snakemake.params.features,
    )
    log.info("bundle %s: %s + %s", out, snakemake.input.face, ", ".join(snakemake.params.models))
