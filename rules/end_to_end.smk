# End-to-end models: each backbone's fine-tuned CNN and a sequence model trained on its cached
# features (a temporal head or an early-fusion option) trained together on face sequences
# → <run>/models/e2e_<model>_<backbone>/. The per-epoch resume checkpoint (resume-<hash>.pt)
# sits beside model.pt, undeclared.


rule train_end_to_end:
    input:
        unpack(end_to_end_inputs),
    output:
        model="{run}/models/e2e_{model}_{backbone}/model.pt",
        predictions="{run}/models/e2e_{model}_{backbone}/predictions.csv",
        metrics="{run}/models/e2e_{model}_{backbone}/metrics.json",
    params:
        settings=result_settings(config["end_to_end"], "models"),
        features=cnn_features,
        seed=config["seed"],
        resume_dir="{run}/models/e2e_{model}_{backbone}",
    wildcard_constraints:
        model=E2E_MODEL_RE,
        backbone=BACKBONE_RE,
    log:
        "{run}/logs/train_end_to_end/e2e_{model}_{backbone}.log",
    benchmark:
        "{run}/benchmarks/train_end_to_end/e2e_{model}_{backbone}.tsv"
    threads: config["end_to_end"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["end_to_end"]["resources"]["mem_mb"]),
        runtime=config["end_to_end"]["resources"]["runtime"],
        gpu=config["end_to_end"]["resources"]["gpu"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_end_to_end.py"
