"""Snakemake script: one shard of the sample sheet → its audio cache (LLDs on the frame grid)."""

from avfer.audio import build_audio_shard
from avfer.datasets import read_sample_sheet, shard_clips
from avfer.workflow import logged

with logged(snakemake.log[0], "extract_audio_features") as log:
    rows = shard_clips(read_sample_sheet(snakemake.input.sheet), snakemake.wildcards.shard)
    summary = build_audio_shard(rows, snakemake.output.h5, dict(snakemake.params.audio))
    log.info("%s: %s, real-time factor %s", rows["shard"][0], summary["status"], summary["realtime_factor"])
