# Clip-level video networks (C3D, dual C3D, 2-layer C3D, TSM, torchvision video ResNets / S3D /
# MViT / Swin, TimeSformer, ViViT, VGG16+LSTM) on clips of T face frames of the face caches
# → <run>/models/<video_model>/, in the shared evaluation format (late fusion and the summary
# read them like every other model). The per-epoch resume checkpoint (resume-<hash>.pt) sits
# beside model.pt, undeclared; model.pt is written atomically at the end.


rule train_video_model:
    input:
        unpack(video_model_inputs),
    output:
        model="{run}/models/{video_model}/model.pt",
        predictions="{run}/models/{video_model}/predictions.csv",
        metrics="{run}/models/{video_model}/metrics.json",
        confusion=report(
            "{run}/models/{video_model}/confusion.svg",
            caption="../report/video_models.rst",
            category="Models",
            subcategory="{video_model}",
        ),
    params:
        settings=video_model_settings,
        seed=config["seed"],
    wildcard_constraints:
        video_model=VIDEO_MODEL_RE,
    log:
        "{run}/logs/train_video_model/{video_model}.log",
    benchmark:
        "{run}/benchmarks/train_video_model/{video_model}.tsv"
    threads: config["video_models"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["video_models"]["resources"]["mem_mb"]),
        runtime=config["video_models"]["resources"]["runtime"],
        gpu=config["video_models"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_video_model.py"
