# Early fusion (options a-d per backbone), late fusion of any list of trained models, and the
# summary table of every model: results/models/early<option>_<backbone>/,
# results/late_fusion.json, results/fusion/, results/submission/, results/summary.csv.


rule train_early_fusion:
    input:
        unpack(early_fusion_inputs),
    output:
        model=f"{R}/models/early{{option}}_{{backbone}}/model.pt",
        predictions=f"{R}/models/early{{option}}_{{backbone}}/predictions.csv",
        metrics=f"{R}/models/early{{option}}_{{backbone}}/metrics.json",
    params:
        model="early{option}_{backbone}",
        settings=config["early_fusion"],
        seed=config["seed"],
        resume_dir=f"{R}/models/early{{option}}_{{backbone}}",
    wildcard_constraints:
        option=OPTION_RE,
        backbone=BACKBONE_RE,
    log:
        f"{R}/logs/train_early_fusion/early{{option}}_{{backbone}}.log",
    benchmark:
        f"{R}/benchmarks/train_early_fusion/early{{option}}_{{backbone}}.tsv"
    threads: config["early_fusion"]["resources"]["threads"]
    resources:
        mem_mb=config["early_fusion"]["resources"]["mem_mb"],
        runtime=config["early_fusion"]["resources"]["runtime"],
        gpu=config["early_fusion"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_sequence_model.py"


rule fuse_late:
    input:
        unpack(fusion_inputs),
    output:
        result=f"{R}/late_fusion.json",
        predictions=f"{R}/fusion/predictions.csv",
        metrics=f"{R}/fusion/metrics.json",
        submission=directory(f"{R}/submission"),
        confusion=report(
            f"{R}/fusion/confusion.svg",
            category="Summary",
            caption="../report/fusion.rst",
        ),
    params:
        models=fused_models(),
        fusion=config["fusion"],
        seed=config["seed"],
    log:
        f"{R}/logs/fuse_late.log",
    benchmark:
        f"{R}/benchmarks/fuse_late.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/fuse_late.py"


rule summarize_models:
    input:
        unpack(summary_inputs),
    output:
        table=report(
            f"{R}/summary.csv",
            category="Summary",
            caption="../report/summary.rst",
        ),
    params:
        models=trained_models(),
    log:
        f"{R}/logs/summarize_models.log",
    benchmark:
        f"{R}/benchmarks/summarize_models.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/summarize_models.py"
