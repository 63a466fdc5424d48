# Temporal visual models: a recurrent head (GRU, BGRU, LSTM, ± attention) over each backbone's
# per-frame CNN features → results/models/<head>_<backbone>/.


rule train_temporal:
    input:
        unpack(temporal_inputs),
    output:
        model="{run}/models/{head}_{backbone}/model.pt",
        predictions="{run}/models/{head}_{backbone}/predictions.csv",
        metrics="{run}/models/{head}_{backbone}/metrics.json",
    params:
        model="{head}_{backbone}",
        settings=result_settings(config["temporal"]),
        seed=config["seed"],
        resume_dir="{run}/models/{head}_{backbone}",
    wildcard_constraints:
        head=HEAD_RE,
        backbone=BACKBONE_RE,
    log:
        "{run}/logs/train_temporal/{head}_{backbone}.log",
    benchmark:
        "{run}/benchmarks/train_temporal/{head}_{backbone}.tsv"
    threads: config["temporal"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["temporal"]["resources"]["mem_mb"]),
        runtime=config["temporal"]["resources"]["runtime"],
        gpu=config["temporal"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_sequence_model.py"
