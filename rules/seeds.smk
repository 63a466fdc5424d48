# Several runs of one model as separate ensemble members: fusion.models may list
# <model>@seed<k> (e.g. cnn_resnet50@seed1, bgru_att_vgg16@seed2, audio_mlp@seed3,
# e2e_bgru_vgg16@seed1, r2plus1d_18@seed2), trained like <model> but with seed k
# → <run>/models/<model>@seed<k>/. A seeded temporal head or early fusion reads the features /
# encoders of the unseeded base models; a seeded end-to-end model starts from the unseeded CNN
# and sequence model, like its base.


use rule finetune_cnn as finetune_cnn_seeded with:
    output:
        model="{run}/models/cnn_{backbone}@seed{seed}/model.pt",
        predictions="{run}/models/cnn_{backbone}@seed{seed}/predictions.csv",
        metrics="{run}/models/cnn_{backbone}@seed{seed}/metrics.json",
        confusion="{run}/models/cnn_{backbone}@seed{seed}/confusion.svg",
    params:
        seed=lambda wildcards: int(wildcards.seed),
    wildcard_constraints:
        backbone=BACKBONE_RE,
        seed=r"\d+",
    log:
        "{run}/logs/finetune_cnn/{backbone}@seed{seed}.log",
    benchmark:
        "{run}/benchmarks/finetune_cnn/{backbone}@seed{seed}.tsv"


rule train_sequence_seeded:
    input:
        unpack(seeded_inputs),
    output:
        model="{run}/models/{model}@seed{seed}/model.pt",
        predictions="{run}/models/{model}@seed{seed}/predictions.csv",
        metrics="{run}/models/{model}@seed{seed}/metrics.json",
    params:
        model="{model}",
        section=seeded_section,
        settings=seeded_settings,
        seed=lambda wildcards: int(wildcards.seed),
        resume_dir="{run}/models/{model}@seed{seed}",
    wildcard_constraints:
        model=SEQUENCE_MODEL_RE,
        seed=r"\d+",
    log:
        "{run}/logs/train_sequence_seeded/{model}@seed{seed}.log",
    benchmark:
        "{run}/benchmarks/train_sequence_seeded/{model}@seed{seed}.tsv"
    threads: lambda wildcards: config[seeded_section(wildcards)]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(lambda wildcards: config[seeded_section(wildcards)]["resources"]["mem_mb"]),
        runtime=lambda wildcards: config[seeded_section(wildcards)]["resources"]["runtime"],
        gpu=lambda wildcards: config[seeded_section(wildcards)]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_sequence_model.py"


use rule train_end_to_end as train_end_to_end_seeded with:
    output:
        model="{run}/models/e2e_{model}_{backbone}@seed{seed}/model.pt",
        predictions="{run}/models/e2e_{model}_{backbone}@seed{seed}/predictions.csv",
        metrics="{run}/models/e2e_{model}_{backbone}@seed{seed}/metrics.json",
    params:
        seed=lambda wildcards: int(wildcards.seed),
        resume_dir="{run}/models/e2e_{model}_{backbone}@seed{seed}",
    wildcard_constraints:
        model=E2E_MODEL_RE,
        backbone=BACKBONE_RE,
        seed=r"\d+",
    log:
        "{run}/logs/train_end_to_end/e2e_{model}_{backbone}@seed{seed}.log",
    benchmark:
        "{run}/benchmarks/train_end_to_end/e2e_{model}_{backbone}@seed{seed}.tsv"


use rule train_video_model as train_video_model_seeded with:
    output:
        model="{run}/models/{video_model}@seed{seed}/model.pt",
        predictions="{run}/models/{video_model}@seed{seed}/predictions.csv",
        metrics="{run}/models/{video_model}@seed{seed}/metrics.json",
        confusion="{run}/models/{video_model}@seed{seed}/confusion.svg",
    params:
        seed=lambda wildcards: int(wildcards.seed),
    wildcard_constraints:
        video_model=VIDEO_MODEL_RE,
        seed=r"\d+",
    log:
        "{run}/logs/train_video_model/{video_model}@seed{seed}.log",
    benchmark:
        "{run}/benchmarks/train_video_model/{video_model}@seed{seed}.tsv"
