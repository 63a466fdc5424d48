# Visual CNNs: static pre-training (pretrain/<backbone>/), fine-tuning on the face frames of the
# face caches (<run>/models/cnn_<backbone>/) and per-frame features of every clip at the feature
# layer (cnn.feature_layer: params of the extraction, not of the trainers, whose weights do not
# depend on it) → <run>/features/<backbone>/<shard>.h5, the input of the temporal and early-fusion models.
# Per-epoch resume checkpoints (resume-<hash>.pt) sit beside model.pt, undeclared, so an
# interrupted job resumes where it stopped; model.pt is written atomically at the end.


rule pretrain_cnn:
    input:
        datasets=pretrain_inputs,
    output:
        model=(
            protected(f"{R}/pretrain/{{backbone}}/model.pt")
            if config["pretrain"]["protect"]
            else f"{R}/pretrain/{{backbone}}/model.pt"
        ),
        metrics=f"{R}/pretrain/{{backbone}}/metrics.json",
    params:
        pretrain=result_settings(config["pretrain"], "enabled"),
        cnn=PLAN.pretrain_cnn_settings(),
        seed=config["seed"],
    wildcard_constraints:
        backbone=BACKBONE_RE,
    log:
        f"{R}/logs/pretrain_cnn/{{backbone}}.log",
    benchmark:
        f"{R}/benchmarks/pretrain_cnn/{{backbone}}.tsv"
    threads: config["pretrain"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["pretrain"]["resources"]["mem_mb"]),
        runtime=config["pretrain"]["resources"]["runtime"],
        gpu=config["pretrain"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/pretrain_cnn.py"


rule finetune_cnn:
    input:
        unpack(cnn_finetune_inputs),
    output:
        model="{run}/models/cnn_{backbone}/model.pt",
        predictions="{run}/models/cnn_{backbone}/predictions.csv",
        metrics="{run}/models/cnn_{backbone}/metrics.json",
        confusion=report(
            "{run}/models/cnn_{backbone}/confusion.svg",
            caption="../report/cnn.rst",
            category="Models",
            subcategory="cnn_{backbone}",
        ),
    params:
        cnn=PLAN.finetune_cnn_settings(),
        seed=config["seed"],
    wildcard_constraints:
        backbone=BACKBONE_RE,
    log:
        "{run}/logs/finetune_cnn/{backbone}.log",
    benchmark:
        "{run}/benchmarks/finetune_cnn/{backbone}.tsv"
    threads: config["cnn"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["cnn"]["resources"]["mem_mb"]),
        runtime=config["cnn"]["resources"]["runtime"],
        gpu=config["cnn"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/finetune_cnn.py"


rule extract_cnn_features:
    input:
        faces=f"{R}/faces/{{shard}}.h5",
        model="{run}/models/cnn_{backbone}/model.pt",
    output:
        h5="{run}/features/{backbone}/{shard}.h5",
    params:
        features=cnn_features,
    wildcard_constraints:
        backbone=BACKBONE_RE,
    log:
        "{run}/logs/extract_cnn_features/{backbone}/{shard}.log",
    benchmark:
        "{run}/benchmarks/extract_cnn_features/{backbone}/{shard}.tsv"
    threads: config["cnn"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["cnn"]["resources"]["mem_mb"]),
        runtime=config["cnn"]["resources"]["runtime"],
        gpu=config["cnn"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/extract_cnn_features.py"
