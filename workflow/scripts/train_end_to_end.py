"""Snakemake script of train_end_to_end: train the CNN and a sequence model together
→ model.pt, predictions.csv, metrics.json of e2e_<model>_<backbone>."""

from avfer.datasets.splits import read_splits
from avfer.device import job_device
from avfer.train.end_to_end import train_end_to_end
from avfer.workflow import logged

with logged(snakemake.log[0], snakemake.rule) as log:
    section = snakemake.config["end_to_end"]
    inputs = dict(snakemake.input.items())
    name = f"e2e_{snakemake.wildcards.model}_{snakemake.wildcards.backbone}"
    train = {
        **snakemake.params.settings["train"],  # the result-affecting settings (the rerun trigger)
        "amp": section["amp"],
        "device": job_device(snakemake, section["device"], "end_to_end.device"),
    }
    metrics = train_end_to_end(
        name,
        cnn_path=inputs["cnn"],
        sequence_path=inputs["sequence"],
        face_paths=list(inputs["faces"]),
        audio_paths=list(inputs.get("audio", [])),
        train=train,
        out_model=snakemake.output.model,
        out_predictions=snakemake.output.predictions,
        out_metrics=snakemake.output.metrics,
        assignment=read_splits(inputs["splits"]),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        eval_batch_size=section["eval_batch_size"],
        resume_dir=snakemake.params.resume_dir,
        features=snakemake.params.features,
    )
    log.info("%s: %s", name, {s: round(m["accuracy"], 4) for s, m in metrics.items()})
