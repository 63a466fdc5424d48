# Early fusion (options a-d per backbone), late fusion of any list of trained models, and the
# summary table of every model, per protocol run: <run>/models/early<option>_<backbone>/,
# <run>/late_fusion.json, <run>/fusion/, <run>/submission/, <run>/summary.csv; with
# dataset.folds, results/cv_summary.json (mean ± std over the folds).


rule train_early_fusion:
    input:
        unpack(early_fusion_inputs),
    output:
        model="{run}/models/early{option}_{backbone}/model.pt",
        predictions="{run}/models/early{option}_{backbone}/predictions.csv",
        metrics="{run}/models/early{option}_{backbone}/metrics.json",
    params:
        model="early{option}_{backbone}",
        settings=result_settings(config["early_fusion"]),
        seed=config["seed"],
        resume_dir="{run}/models/early{option}_{backbone}",
    wildcard_constraints:
        option=OPTION_RE,
        backbone=BACKBONE_RE,
    log:
        "{run}/logs/train_early_fusion/early{option}_{backbone}.log",
    benchmark:
        "{run}/benchmarks/train_early_fusion/early{option}_{backbone}.tsv"
    threads: config["early_fusion"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["early_fusion"]["resources"]["mem_mb"]),
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
        result="{run}/late_fusion.json",
        predictions="{run}/fusion/predictions.csv",
        metrics="{run}/fusion/metrics.json",
        submission=directory("{run}/submission"),
        confusion=report(
            "{run}/fusion/confusion.svg",
            category="Summary",
            caption="../report/fusion.rst",
        ),
    params:
        models=fused_models(),
        fusion=result_settings(config["fusion"], "chunk_size"),
        seed=config["seed"],
    log:
        "{run}/logs/fuse_late.log",
    benchmark:
        "{run}/benchmarks/fuse_late.tsv"
    threads: 1
    resources:
        mem_mb=scaled_mem(4000),
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
            "{run}/summary.csv",
            category="Summary",
            caption="../report/summary.rst",
        ),
        fallbacks="{run}/fallbacks.csv",
    params:
        models=summary_models(),  # the same list as summary_inputs: every trained and fused model
    log:
        "{run}/logs/summarize_models.log",
    benchmark:
        "{run}/benchmarks/summarize_models.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/summarize_models.py"


rule summarize_cv:
    input:
        unpack(cv_inputs),
    output:
        summary=report(
            f"{R}/cv_summary.json",
            category="Summary",
            caption="../report/cv.rst",
        ),
    params:
        runs=RUNS,
        models=summary_models(),
        dataset={k: DATA[k] for k in SPLIT_KEYS if k != "test_labels"},
    log:
        f"{R}/logs/summarize_cv.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/summarize_cv.py"
