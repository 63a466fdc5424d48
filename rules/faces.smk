# Faces: 25 fps frames → MTCNN on keyframes + O-Net tracking of the main subject → aligned
# crops, one HDF5 per shard (results/faces/<shard>.h5), and a per-split report.


rule detect_faces:
    input:
        unpack(shard_videos),
    output:
        h5=f"{R}/faces/{{shard}}.h5",
    params:
        clips=shard_rows,
        # what the cache depends on (a change re-runs the shards); device/batch size do not
        settings=result_settings(config["faces"], "batch_size"),
    log:
        f"{R}/logs/detect_faces/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/detect_faces/{{shard}}.tsv"
    threads: config["faces"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["faces"]["resources"]["mem_mb"]),
        runtime=config["faces"]["resources"]["runtime"],
        gpu=config["faces"]["resources"]["gpu"],
    conda:
        "../envs/video.yaml"
    script:
        "../workflow/scripts/detect_faces.py"


rule summarize_faces:
    input:
        shards=face_split_shards,
    output:
        summary=f"{R}/faces/summary_{{split}}.json",
        clips=f"{R}/faces/summary_{{split}}.csv",
    log:
        f"{R}/logs/summarize_faces/{{split}}.log",
    threads: 1
    resources:
        mem_mb=scaled_mem(1000),
        runtime=10,
    conda:
        "../envs/video.yaml"
    script:
        "../workflow/scripts/summarize_faces.py"
