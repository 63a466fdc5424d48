"""Snakemake script: one shard of the sample sheet → its face cache (aligned crops per frame)."""

import pandas as pd

from avfer.device import job_device
from avfer.faces import build_face_shard
from avfer.workflow import logged

with logged(snakemake.log[0], "detect_faces") as log:
    rows = pd.DataFrame(snakemake.params.clips)  # the shard's sheet rows
    faces = dict(snakemake.config["faces"])
    faces["device"] = job_device(snakemake, faces["device"], "faces.device")
    summary = build_face_shard(rows, snakemake.output.h5, faces, threads=snakemake.threads)
    counts = {s: sum(r["status"] == s for r in summary) for s in ("ok", "no_face", "no_video", "failed")}
    log.info("%s: %d clips %s", snakemake.wildcards.shard, len(summary), counts)
