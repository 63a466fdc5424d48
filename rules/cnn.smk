# Visual CNNs: static pre-training (pretrain/<backbone>/), fine-tuning on the face frames of the
# face caches (models/cnn_<backbone>/) and per-frame penultimate features of every clip
# (features/<backbone>/<shard>.h5, the input of the temporal and early-fusion models).
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
        pretrain={k: v for k, v in config["pretrain"].items() if k != "resources"},
        cnn={k: config["cnn"][k] for k in CNN_MODEL_KEYS},
        seed=config["seed"],
    wildcard_constraints:
        backbone=BACKBONE_RE,
    log:
        f"{R}/logs/pretrain_cnn/{{backbone}}.log",
    benchmark:
        f"{R}/benchmarks/pretrain_cnn/{{backbone}}.tsv"
    threads: config["pretrain"]["resources"]["threads"]
    resources:
        mem_mb=config["pretrain"]["resources"]["mem_mb"],
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
        model=f"{R}/models/cnn_{{backbone}}/model.pt",
        predictions=f"{R}/models/cnn_{{backbone}}/predictions.csv",
        metrics=f"{R}/models/cnn_{{backbone}}/metrics.json",
        confusion=report(
            f"{R}/models/cnn_{{backbone}}/confusion.svg",
            caption="../report/cnn.rst",
            category="Models",
            subcategory="cnn_{backbone}",
        ),
    params:
        cnn={k: v for k, v in config["cnn"].items() if k not in ("resources", "backbones")},
        seed=config["seed"],
    wildcard_constraints:
        backbone=BACKBONE_RE,
    log:
        f"{R}/logs/finetune_cnn/{{backbone}}.log",
    benchmark:
        f"{R}/benchmarks/finetune_cnn/{{backbone}}.tsv"
    threads: config["cnn"]["resources"]["threads"]
    resources:
        mem_mb=config["cnn"]["resources"]["mem_mb"],
        runtime=config["cnn"]["resources"]["runtime"],
        gpu=config["cnn"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/finetune_cnn.py"


rule extract_cnn_features:
    input:
        faces=f"{R}/faces/{{shard}}.h5",
        model=f"{R}/models/cnn_{{backbone}}/model.pt",
    output:
        h5=f"{R}/features/{{backbone}}/{{shard}}.h5",
    params:
        device=config["cnn"]["device"],
        batch_size=config["cnn"]["eval_batch_size"],
    wildcard_constraints:
        backbone=BACKBONE_RE,
    log:
        f"{R}/logs/extract_cnn_features/{{backbone}}/{{shard}}.log",
    benchmark:
        f"{R}/benchmarks/extract_cnn_features/{{backbone}}/{{shard}}.tsv"
    threads: config["cnn"]["resources"]["threads"]
    resources:
        mem_mb=config["cnn"]["resources"]["mem_mb"],
        runtime=config["cnn"]["resources"]["runtime"],
        gpu=config["cnn"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/extract_cnn_features.py"
