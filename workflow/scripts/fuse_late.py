"""Snakemake script: late fusion of the trained models → late_fusion.json, fused predictions,
EmotiW submission folder."""

from avfer.datasets.splits import read_groups
from avfer.fusion import run_late_fusion
from avfer.workflow import logged

with logged(snakemake.log[0], "fuse_late") as log:
    cfg = snakemake.params.fusion
    truth = list(snakemake.input.truth)
    result = run_late_fusion(
        dict(zip(snakemake.params.models, snakemake.input.predictions, strict=True)),
        out_json=snakemake.output.result,
        out_predictions=snakemake.output.predictions,
        out_metrics=snakemake.output.metrics,
        out_submission=snakemake.output.submission,
        out_confusion=snakemake.output.confusion,
        methods=cfg["methods"],
        method=cfg["method"],
        objective=cfg["objective"],
        step=cfg["step"],
        max_points=cfg["max_points"],
        folds=cfg["cv_folds"],
        rounds=cfg["class_rounds"],
        chunk=snakemake.config["fusion"]["chunk_size"],  # memory only: not in params
        seed=snakemake.params.seed,
        truth=truth[0] if truth else None,
        scores=cfg["scores"],
        groups=read_groups(snakemake.input.splits),
    )
    log.info(
        "late fusion: %s, val_fitted accuracy %.4f, nested cv accuracy %s, test %s",
        result["method"],
        result["val_fitted"]["accuracy"],
        result["cv"]["accuracy"],
        result.get("test", {}).get("accuracy"),
    )
