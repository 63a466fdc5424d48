# Dataset: the demo generator, the sample sheet that every later stage reads, and the split
# assignment of each protocol run (<run>/splits.csv: train / dev / val / test).


rule make_demo_dataset:
    output:
        truth=DEMO_TRUTH,
        fer=f"{config['dataset']['root']}/fer2013.csv",
    params:
        root=lambda wildcards, output: os.path.dirname(output.truth),
        seed=config["seed"],
        demo=config["demo"],
    log:
        f"{R}/logs/make_demo_dataset.log",
    benchmark:
        f"{R}/benchmarks/make_demo_dataset.tsv"
    threads: 2
    resources:
        mem_mb=scaled_mem(2000),
        runtime=30,
    conda:
        "../envs/video.yaml"
    script:
        "../workflow/scripts/make_demo_dataset.py"


checkpoint build_sample_sheet:
    input:
        dataset_inputs,
    output:
        sheet=f"{R}/samples.csv",
    params:
        dataset={k: v for k, v in DATA.items() if k not in SPLIT_KEYS},
    log:
        f"{R}/logs/build_sample_sheet.log",
    conda:
        "../envs/video.yaml"
    script:
        "../workflow/scripts/build_sample_sheet.py"


rule assign_splits:
    input:
        sheet=f"{R}/samples.csv",
    output:
        splits="{run}/splits.csv",
    params:
        dev_fraction=DATA["dev_fraction"],
        folds=FOLDS,
        fold_val=DATA["fold_val"],
        fold_val_fraction=DATA["fold_val_fraction"],
        fold=lambda wildcards: run_fold(wildcards.run),
        seed=config["seed"],
    log:
        "{run}/logs/assign_splits.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/assign_splits.py"
