"""Snakemake script: generate the synthetic AFEW-style demo dataset."""

from pathlib import Path

from avfer.demo import make_demo
from avfer.workflow import logged

with logged(snakemake.log[0], "make_demo_dataset") as log:
    demo = snakemake.params.demo
    summary = make_demo(
        Path(snakemake.params.root), seed=snakemake.params.seed, workers=snakemake.threads, **demo
    )
    log.info("demo dataset: %s", summary)
