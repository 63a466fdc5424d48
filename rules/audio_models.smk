# Audio models: an MLP on the whole-clip functionals and a GRU on the frame-grid LLDs
# → results/models/audio_<mlp|gru>/.


rule train_audio_model:
    input:
        unpack(audio_model_inputs),
    output:
        model="{run}/models/audio_{audio_model}/model.pt",
        predictions="{run}/models/audio_{audio_model}/predictions.csv",
        metrics="{run}/models/audio_{audio_model}/metrics.json",
    params:
        model="audio_{audio_model}",
        settings=result_settings(config["audio_models"]),
        seed=config["seed"],
        resume_dir="{run}/models/audio_{audio_model}",
    wildcard_constraints:
        audio_model=AUDIO_MODEL_RE,
    log:
        "{run}/logs/train_audio_model/audio_{audio_model}.log",
    benchmark:
        "{run}/benchmarks/train_audio_model/audio_{audio_model}.tsv"
    threads: config["audio_models"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["audio_models"]["resources"]["mem_mb"]),
        runtime=config["audio_models"]["resources"]["runtime"],
        gpu=config["audio_models"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_sequence_model.py"
