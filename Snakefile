# avfer: audio-visual facial emotion recognition in video.
#
# Path convention (everything below config["results"], default results/):
#   data/demo/                       generated demo dataset (only when dataset.generate_demo)
#   samples.csv                      sample sheet: clip_id, path, split, label, shard
#   <stage>/<shard>.h5               per-shard HDF5 caches (shard = <split>-<nnn>)
#   models/<model>/                  a trained model: checkpoint, predictions.csv, metrics.json
#   late_fusion.json                 the final result
#   bundle/                          the trained run packaged for `avfer predict` (export_bundle)
#   logs/<rule>/...  benchmarks/<rule>/...   mirror the outputs they belong to

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/faces.smk"
include: "rules/cnn.smk"
include: "rules/audio.smk"
include: "rules/temporal.smk"
include: "rules/audio_models.smk"
include: "rules/fusion.smk"
include: "rules/bundle.smk"


rule all:
    default_target: True
    input:
        final_targets(),
