"""Snakemake script: score the pre-trained image models and their ensemble on FER2013
PublicTest / PrivateTest → static/evaluation.json, static/report.txt."""

from pathlib import Path

from avfer.device import job_device
from avfer.train.static_eval import evaluate_static
from avfer.workflow import logged

with logged(snakemake.log[0], "evaluate_static") as log:
    models = {Path(p).parent.name: p for p in snakemake.input.models}
    result = evaluate_static(
        models,
        snakemake.input.csv,
        out_json=snakemake.output.result,
        out_report=snakemake.output.report,
        device=job_device(snakemake, snakemake.config["cnn"]["device"], "cnn.device"),
        batch_size=snakemake.config["cnn"]["eval_batch_size"],
    )
    log.info("static evaluation of %s written", ", ".join(models))
