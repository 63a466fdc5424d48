"""Snakemake script of train_temporal, train_audio_model and train_early_fusion: train one sequence
model (temporal head, audio model or early fusion, by its name) → model.pt, predictions, metrics."""

from avfer.datasets.splits import read_splits
from avfer.device import job_device
from avfer.train.sequence import model_settings, train_sequence_model
from avfer.workflow import logged

SECTION = {
    "train_temporal": "temporal",
    "train_audio_model": "audio_models",
    "train_early_fusion": "early_fusion",
}

with logged(snakemake.log[0], snakemake.rule) as log:
    name = snakemake.params.model
    inputs = dict(snakemake.input.items())
    # params hold the result-affecting settings (the rerun trigger); the device comes from the config
    model_args, train = model_settings(name, snakemake.params.settings)
    section = SECTION.get(snakemake.rule) or snakemake.params.section  # train_sequence_seeded
    train["device"] = job_device(
        snakemake, snakemake.config[section]["train"]["device"], f"{section}.train.device"
    )
    metrics = train_sequence_model(
        name,
        model_args=model_args,
        train=train,
        feature_paths=list(inputs.get("features", [])),
        audio_paths=list(inputs.get("audio", [])),
        pretrained={k: str(inputs[f"{k}_encoder"]) for k in ("audio", "video") if f"{k}_encoder" in inputs},
        assignment=read_splits(inputs["splits"]),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        out_model=snakemake.output.model,
        out_predictions=snakemake.output.predictions,
        out_metrics=snakemake.output.metrics,
        resume_dir=snakemake.params.resume_dir,
    )
    log.info("%s: %s", name, {s: round(m["accuracy"], 4) for s, m in metrics.items()})
