"""Snakemake script: merge the audio shard summaries of one split (clips without audio, failures)."""

from avfer.audio import summarize_audio
from avfer.io import write_json
from avfer.workflow import logged

with logged(snakemake.log[0], "summarize_audio") as log:
    split = snakemake.wildcards.split
    summary = summarize_audio(
        list(snakemake.input.shards),
        split=split,
        max_failed_fraction=snakemake.config["audio"]["max_failed_fraction"],
    )
    write_json(snakemake.output.summary, {"split": split, **summary})
    log.info("%s: %s", split, summary["status"])
