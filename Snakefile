# avfer: audio-visual facial emotion recognition in video.
#
# Config: config/config.yaml (the demo) is read only when no --configfile is given; a user's
# file is completed from config/schema.yaml's defaults (rules/common.smk), never from the demo.
#
# Path convention (everything below config["results"], default results/):
#   data/demo/                       generated demo dataset (only when dataset.generate_demo)
#   samples.csv                      sample sheet: clip_id, path, split, label, group, fold, shard
#   faces/ audio/ pretrain/          per-shard HDF5 caches (shard = <split>-<nnn>), shared by runs
#   <run>/                           one protocol run: results/ itself, or results/fold-<k>/
#     splits.csv                     what each clip is used for: train / dev / val / test
#     features/<backbone>/<shard>.h5 per-frame CNN features of the run's fine-tuned CNN
#     models/<model>/                a trained model: checkpoint, predictions.csv, metrics.json
#     late_fusion.json  summary.csv  the final result and the table of every model
#   cv_summary.json                  mean ± std over the folds (dataset.folds only)
#   bundle/                          the trained run packaged for `avfer predict` (export_bundle)
#   static/                          FER2013 PublicTest / PrivateTest scores (pretrain.evaluate_static)
#   logs/<rule>/...  benchmarks/<rule>/...   mirror the outputs they belong to

from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/faces.smk"
include: "rules/cnn.smk"
include: "rules/audio.smk"
include: "rules/temporal.smk"
include: "rules/audio_models.smk"
include: "rules/video_models.smk"
include: "rules/end_to_end.smk"
include: "rules/fusion.smk"
include: "rules/bundle.smk"
include: "rules/seeds.smk"
include: "rules/static.smk"
include: "rules/face_model.smk"


# Cheap bookkeeping rules run in the main Snakemake process, never as cluster jobs.
localrules:
    all,
    build_sample_sheet,
    assign_splits,
    summarize_faces,
    summarize_audio,
    summarize_models,
    summarize_cv,
    export_bundle,


rule all:
    default_target: True
    input:
        final_targets(),
