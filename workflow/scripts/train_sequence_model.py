"""Snakemake script of train_temporal, train_audio_model and train_early_fusion: train one sequence
model (temporal head, audio model or early fusion, by its name) → model.pt, predictions, metrics."""

from avfer.train.sequence import model_settings, train_sequence_model
from avfer.workflow import logged

with logged(snakemake.log[0], snakemake.rule) as log:
    name = snakemake.params.model
    inputs = dict(snakemake.input.items())
    model_args, train = model_settings(name, snakemake.params.settings)
    metrics = train_sequence_model(
        name,
        model_args=model_args,
        train=train,
        feature_paths=list(inputs.get("features", [])),
        audio_paths=list(inputs.get("audio", [])),
        pretrained={k: str(inputs[f"{k}_encoder"]) for k in ("audio", "video") if f"{k}_encoder" in inputs},
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        out_model=snakemake.output.model,
        out_predictions=snakemake.output.predictions,
        out_metrics=snakemake.output.metrics,
        resume_dir=snakemake.params.resume_dir,
    )
    log.info("%s: val accuracy %.4f, uar %.4f", name, metrics["val"]["accuracy"], metrics["val"]["uar"])
