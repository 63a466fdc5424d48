# Config validation, the sample sheet, wildcard constraints and input functions.
# Only this file defines Python functions; the other rule files hold rules.

import os

import pandas as pd

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from avfer.config import load_schema, validate_config
from avfer.datasets import SPLITS, read_sample_sheet


try:
    validate(config, schema="../config/schema.yaml")
except WorkflowError:
    # Snakemake's message prints the whole schema; say the offending key in one line instead.
    validate_config(config, load_schema(os.path.join(workflow.basedir, "config/schema.yaml")))
    raise

R = config["results"]
DEMO_TRUTH = f"{config['dataset']['root']}/demo_truth.csv"


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"(train|val|test)-\d{3}",


def dataset_inputs(wildcards):
    """What the sample sheet depends on: the generated demo dataset, when there is one."""
    return [DEMO_TRUTH] if config["dataset"]["generate_demo"] else []


def sample_sheet() -> pd.DataFrame:
    """The sample sheet (available once the build_sample_sheet checkpoint has run)."""
    return read_sample_sheet(checkpoints.build_sample_sheet.get().output.sheet)


def shards(split: str | None = None) -> list[str]:
    """Shard keys of the dataset (of one split, or of all)."""
    sheet = sample_sheet()
    if split is not None:
        sheet = sheet[sheet["split"] == split]
    return sorted(sheet["shard"].unique())


def audio_shards(split: str | None = None) -> list[str]:
    """Audio caches (of one split, or of all): one per shard of the sample sheet."""
    return [f"{R}/audio/{shard}.h5" for shard in shards(split)]


def audio_extract_inputs(wildcards) -> dict[str, list[str]]:
    """Besides the sheet, extract_audio_features reads the shard's videos and a custom .conf."""
    sheet = sample_sheet()
    conf = config["audio"]["feature_set"]
    return {
        "videos": sheet.loc[sheet["shard"] == wildcards.shard, "path"].tolist(),
        "conf": [conf] if conf.endswith(".conf") else [],
    }


def audio_split_shards(wildcards) -> list[str]:
    """The audio caches of one split (summarize_audio)."""
    return audio_shards(wildcards.split)


def audio_targets(wildcards) -> list[str]:
    """Every audio cache and the per-split audio summaries."""
    splits = sorted(sample_sheet()["split"].unique())
    return audio_shards() + [f"{R}/audio/summary/{split}.json" for split in splits]


def final_targets() -> list:
    """The default target: the furthest result the pipeline builds."""
    return [f"{R}/samples.csv", audio_targets]
