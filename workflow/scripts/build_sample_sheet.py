"""Snakemake script: turn the dataset on disk into the sharded sample sheet."""

from avfer.datasets import build_sample_sheet, write_sample_sheet
from avfer.workflow import logged

with logged(snakemake.log[0], "build_sample_sheet") as log:
    sheet = build_sample_sheet(snakemake.params.dataset)
    write_sample_sheet(sheet, snakemake.output.sheet)
    log.info(
        "%d clips in %d shards: %s",
        len(sheet),
        sheet["shard"].nunique(),
        sheet.groupby("split").size().to_dict(),
    )
