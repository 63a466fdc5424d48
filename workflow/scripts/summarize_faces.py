"""Snakemake script: the face caches of one split → summary JSON (+ per-clip CSV)."""

from avfer.faces import summarize_faces
from avfer.workflow import logged

with logged(snakemake.log[0], "summarize_faces") as log:
    report = summarize_faces(
        list(snakemake.input.shards),
        snakemake.output.summary,
        snakemake.output.clips,
        split=snakemake.wildcards.split,
        max_failed_fraction=snakemake.config["faces"]["max_failed_fraction"],
    )
    log.info(
        "%s: %d clips, %d ok, %d without a face %s, %d audio-only %s, %d failed",
        report["split"], report["clips"], report["ok"], report["no_face"], report["no_face_clips"],
        report["no_video"], report["no_video_clips"], report["failed"],
    )  # fmt: skip
