# Audio: openSMILE LLDs on the 25 fps frame grid + whole-clip functionals, one HDF5 per shard.


rule extract_audio_features:
    input:
        unpack(audio_extract_inputs),
    output:
        h5=f"{R}/audio/{{shard}}.h5",
    params:
        clips=shard_rows,
        audio=result_settings(config["audio"]),
    log:
        f"{R}/logs/extract_audio_features/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/extract_audio_features/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=scaled_mem(2000),
        runtime=60,
    conda:
        "../envs/audio.yaml"
    script:
        "../workflow/scripts/extract_audio_features.py"


rule summarize_audio:
    input:
        shards=audio_split_shards,
    output:
        summary=f"{R}/audio/summary/{{split}}.json",
    log:
        f"{R}/logs/summarize_audio/{{split}}.log",
    conda:
        "../envs/audio.yaml"
    script:
        "../workflow/scripts/summarize_audio.py"
