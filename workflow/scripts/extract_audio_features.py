"""Snakemake script: one shard of the sample sheet → its audio cache (LLDs on the frame grid)."""

import pandas as pd

from avfer.audio import build_audio_shard
from avfer.workflow import logged

with logged(snakemake.log[0], "extract_audio_features") as log:
    rows = pd.DataFrame(snakemake.params.clips)  # the shard's sheet rows
    summary = build_audio_shard(rows, snakemake.output.h5, dict(snakemake.config["audio"]))
    log.info("%s: %s, real-time factor %s", rows["shard"][0], summary["status"], summary["realtime_factor"])
