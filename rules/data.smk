# Dataset: the demo generator and the sample sheet that every later stage reads.


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
        mem_mb=2000,
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
        dataset=config["dataset"],
    log:
        f"{R}/logs/build_sample_sheet.log",
    conda:
        "../envs/video.yaml"
    script:
        "../workflow/scripts/build_sample_sheet.py"
