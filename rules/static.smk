# Static evaluation of the FER2013 image models (the static reference systems): every pre-trained
# backbone and their ensemble on FER2013 PublicTest / PrivateTest → results/static/.


rule evaluate_static:
    input:
        unpack(static_inputs),
    output:
        result=report(f"{R}/static/evaluation.json", category="Static models", caption="../report/static.rst"),
        report=f"{R}/static/report.txt",
    log:
        f"{R}/logs/evaluate_static.log",
    benchmark:
        f"{R}/benchmarks/evaluate_static.tsv"
    threads: config["pretrain"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["pretrain"]["resources"]["mem_mb"]),
        runtime=config["pretrain"]["resources"]["runtime"],
        gpu=config["pretrain"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/evaluate_static.py"
