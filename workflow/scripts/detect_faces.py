"""Snakemake script: one shard of the sample sheet → its face cache (aligned crops per frame)."""

from avfer.datasets import read_sample_sheet, shard_clips
from avfer.faces import build_face_shard
from avfer.workflow import logged

with logged(snakemake.log[0], "detect_faces") as log:
    rows = shard_clips(read_sample_sheet(snakemake.input.sheet), snakemake.wildcards.shard)
    summary = build_face_shard(
        rows, snakemake.output.h5, dict(snakemake.config["faces"]), threads=snakemake.threads
    )
    counts = {s: sum(r["status"] == s for r in summary) for s in ("ok", "no_face", "no_video", "failed")}
    log.info("%s: %d clips %s", snakemake.wildcards.shard, len(summary), counts)
