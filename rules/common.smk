# Config validation, the sample sheet, the protocol runs, wildcard constraints and input functions.
# Only this file defines Python functions; the other rule files hold rules. What the config trains,
# fuses and packages, and its consistency checks, are avfer.plan.Plan's (`avfer check-config` too).

import os

from typing import Any

import pandas as pd

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from avfer.config import SCHEMA_PATH, ConfigError, result_settings, validate_config
from avfer.datasets import SPLITS, DatasetError, dataset_sources, read_sample_sheet
from avfer.io.hdf5 import set_file_locking
from avfer.plan import Plan


try:
    # the user's config (or the demo's, see the Snakefile), completed from the schema's defaults
    config.update(validate_config(config))
    PLAN = Plan(config)  # the checks the schema cannot express (fusion members, end to end, ...)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None  # one line naming the key, not the whole schema
validate(config, schema=str(SCHEMA_PATH))
for _note in PLAN.notes():
    logger.info(f"avfer: {_note}")

R = config["results"]
DATA = config["dataset"]
DEMO_TRUTH = f"{DATA['root']}/demo_truth.csv"
set_file_locking(config["hdf5_file_locking"])  # off on NFS / Lustre (docs/cluster.md); jobs inherit it

# Protocol runs: one (results/) on the dataset's splits, or one per fold (results/fold-<k>/).
# Faces, audio and pre-training are shared; models, features and fusion are per run.
FOLDS = DATA["folds"]
RUNS = PLAN.runs
# dataset keys of the protocol (assign_splits), not of the sample sheet (build_sample_sheet)
SPLIT_KEYS = ("dev_fraction", "folds", "fold_val", "fold_val_fraction", "test_labels")
run_fold = PLAN.run_fold


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"(train|val|test)-\d\d\d+",
    run=PLAN.run_re,


def dataset_inputs(wildcards) -> list[str]:
    """What the sample sheet depends on: the generated demo dataset, the manifest file, or the
    dataset's index files and the folders of the clips the last sheet listed (a stat each, no walk
    of the tree: avfer.datasets.dataset_sources)."""
    if DATA["generate_demo"]:
        return [DEMO_TRUTH]
    if DATA["format"] == "manifest":
        return [DATA["manifest"]] if DATA["manifest"] else []
    last = f"{R}/samples.csv"
    try:
        sheet = read_sample_sheet(last) if os.path.exists(last) else None
    except (DatasetError, ValueError):
        sheet = None  # unreadable: rebuilt from the index files and the root
    return dataset_sources(DATA, sheet)


_SHEETS: dict[tuple[str, int], pd.DataFrame] = {}


def sample_sheet() -> pd.DataFrame:
    """The sample sheet, once the build_sample_sheet checkpoint has run (read once per DAG)."""
    path = checkpoints.build_sample_sheet.get().output.sheet
    key = (path, os.stat(path).st_mtime_ns)
    if key not in _SHEETS:
        _SHEETS.clear()
        _SHEETS[key] = read_sample_sheet(path)
    return _SHEETS[key]


def shards(split: str | None = None) -> list[str]:
    """Shard keys of the dataset (of one of its own splits, or of all)."""
    sheet = sample_sheet()
    if split is not None:
        sheet = sheet[sheet["split"] == split]
    return sorted(sheet["shard"].unique())


def shard_videos(wildcards) -> dict[str, list[str]]:
    """The media files of one shard (detect_faces, extract_audio_features)."""
    sheet = sample_sheet()
    return {"videos": sheet.loc[sheet["shard"] == wildcards.shard, "path"].tolist()}


def shard_rows(wildcards) -> list[dict[str, str]]:
    """The sheet rows of one shard: a params of the per-clip stages, so that a rebuilt sheet
    re-runs only the shards whose clips changed."""
    sheet = sample_sheet()
    rows = sheet[sheet["shard"] == wildcards.shard]
    return rows[["clip_id", "path", "split", "label", "shard"]].to_dict("records")


def audio_shards(split: str | None = None) -> list[str]:
    """Audio caches (of one split, or of all): one per shard of the sample sheet."""
    return [f"{R}/audio/{shard}.h5" for shard in shards(split)]


def audio_extract_inputs(wildcards) -> dict[str, list[str]]:
    """extract_audio_features reads the shard's media files and a custom .conf."""
    conf = config["audio"]["feature_set"]
    return {**shard_videos(wildcards), "conf": [conf] if conf.endswith(".conf") else []}


def audio_split_shards(wildcards) -> list[str]:
    """The audio caches of one split (summarize_audio)."""
    return audio_shards(wildcards.split)


def audio_targets(wildcards) -> list[str]:
    """Every audio cache and the per-split audio summaries."""
    splits = sorted(sample_sheet()["split"].unique())
    return audio_shards() + [f"{R}/audio/summary/{split}.json" for split in splits]


def face_shards(split: str | None = None) -> list[str]:
    """Face caches (of one split, or of all): one per shard of the sample sheet."""
    return [f"{R}/faces/{shard}.h5" for shard in shards(split)]


def face_split_shards(wildcards) -> list[str]:
    """The face caches of one split (summarize_faces)."""
    return face_shards(wildcards.split)


def face_targets(wildcards) -> list[str]:
    """Every face cache and the per-split face summaries (train, val, test)."""
    return face_shards() + [f"{R}/faces/summary_{split}.json" for split in SPLITS]


# --- visual CNNs (rules/cnn.smk)

PRETRAIN = PLAN.pretrain  # static pre-training on pretrain.datasets


def cnn_features(wildcards) -> dict[str, Any]:
    """The feature layer read of a backbone's CNN (params of the rules that read CNN features)."""
    return PLAN.features(wildcards.backbone)


def local_weights(backbone: str) -> str | None:
    """The local weights a backbone starts from (avfer.train.cnn.local_weights: cnn.pretrained_paths,
    cnn.pretrained_path, or the shipped face model for cnn.pretrained: ferplus)."""
    from avfer.models.zoo import local_weights as weights_of

    return weights_of(backbone, config["cnn"])


def pretrain_inputs(wildcards) -> list[str]:
    """pretrain_cnn reads the static datasets (csv files or folders) and the backbone's local weights."""
    init = local_weights(wildcards.backbone)
    return [d["path"] for d in config["pretrain"]["datasets"]] + ([init] if init else [])


def face_model_inputs(wildcards) -> list[str]:
    """train_face_model reads its static datasets (csv files, label files, folders or archives)."""
    fm = config["face_model"]
    paths = [p for d in fm["datasets"] for p in (d["path"], d.get("labels")) if p]
    return paths + ([fm["fer2013_csv"]] if fm.get("fer2013_csv") else [])


def run_splits(wildcards) -> str:
    """The split assignment of a run (what trains, selects, fuses and tests)."""
    return f"{wildcards.run}/splits.csv"


def cnn_finetune_inputs(wildcards) -> dict[str, Any]:
    """finetune_cnn reads every face cache and the run's splits, plus the pre-trained model
    (static pre-training) or the local weights of cnn.pretrained_path."""
    out: dict[str, Any] = {"faces": face_shards(), "splits": run_splits(wildcards)}
    if PRETRAIN:
        out["init"] = f"{R}/pretrain/{wildcards.backbone}/model.pt"
    elif local_weights(wildcards.backbone):
        out["init"] = local_weights(wildcards.backbone)
    return out


def cnn_targets(wildcards) -> list[str]:
    """Every run's fine-tuned models, evaluations and feature caches (+ pre-training metrics)."""
    out = []
    for b in backbones():
        for run in RUNS:
            out += [f"{run}/models/cnn_{b}/{n}" for n in ("model.pt", "metrics.json", "confusion.svg")]
            out += feature_caches(run, b)
        if PRETRAIN:
            out.append(f"{R}/pretrain/{b}/metrics.json")
    return out


# --- sequence models, early and late fusion (rules/temporal.smk, audio_models.smk, fusion.smk)


# model names (avfer.models.names) and the wildcard patterns built from them and the config
def backbones() -> list[str]:
    """The CNN backbones of the config (each gets features, temporal heads, early fusion)."""
    return PLAN.backbones


trained_models = PLAN.trained_models  # cnn_<b>, <head>_<b>, audio_<m>, early<o>_<b>, e2e_<m>_<b>, video
fused_models = PLAN.fused_models  # fusion.models; empty = every trained model
summary_models = PLAN.summary_models  # every trained model, plus any other fused model
HEAD_RE = PLAN.head_re
AUDIO_MODEL_RE = PLAN.audio_model_re
OPTION_RE = PLAN.option_re
BACKBONE_RE = PLAN.backbone_re


def model_files(run: str, models: list[str], name: str) -> list[str]:
    """``<run>/models/<model>/<name>`` for each model."""
    return [f"{run}/models/{m}/{name}" for m in models]


def hidden_truth() -> list[str]:
    """Hidden test labels scored in late_fusion.json and the summary (dataset.test_labels, or
    the demo's), if any; labelled test clips of the sheet are scored anyway."""
    if DATA["test_labels"]:
        return [DATA["test_labels"]]
    return [DEMO_TRUTH] if DATA["generate_demo"] and not FOLDS else []


def feature_caches(run: str, backbone: str) -> list[str]:
    """The per-frame CNN feature caches of one run's backbone, one per shard."""
    return [f"{run}/features/{backbone}/{shard}.h5" for shard in shards()]


def temporal_inputs(wildcards) -> dict[str, Any]:
    """train_temporal reads the backbone's feature caches and the run's splits."""
    return {"features": feature_caches(wildcards.run, wildcards.backbone), "splits": run_splits(wildcards)}


def audio_model_inputs(wildcards) -> dict[str, Any]:
    """train_audio_model reads the audio caches and the run's splits."""
    return {"audio": audio_shards(), "splits": run_splits(wildcards)}


def early_fusion_inputs(wildcards) -> dict[str, Any]:
    """Feature and audio caches, plus the trained audio GRU (options b-d) and visual GRU (d)."""
    run = wildcards.run
    out: dict[str, Any] = {
        "features": feature_caches(run, wildcards.backbone),
        "audio": audio_shards(),
        "splits": run_splits(wildcards),
    }
    if wildcards.option in "bcd":
        out["audio_encoder"] = f"{run}/models/audio_gru/model.pt"
    if wildcards.option == "d":
        head = config["early_fusion"]["visual_head"]
        out["video_encoder"] = f"{run}/models/{head}_{wildcards.backbone}/model.pt"
    return out


E2E_MODEL_RE = PLAN.e2e_model_re


def end_to_end_inputs(wildcards) -> dict[str, Any]:
    """train_end_to_end reads the face caches, the run's splits, the fine-tuned CNN, the sequence
    model trained on its features and, for early fusion, the audio caches."""
    run, model = wildcards.run, wildcards.model
    out: dict[str, Any] = {
        "faces": face_shards(),
        "splits": run_splits(wildcards),
        "cnn": f"{run}/models/cnn_{wildcards.backbone}/model.pt",
        "sequence": f"{run}/models/{model}_{wildcards.backbone}/model.pt",
    }
    if model.startswith("early"):
        out["audio"] = audio_shards()
    return out


def fusion_inputs(wildcards) -> dict[str, Any]:
    """fuse_late reads the fused models' predictions, the run's splits (groups of the fusion's
    cross-validation) and hidden test labels, if any."""
    return {
        "predictions": model_files(wildcards.run, fused_models(), "predictions.csv"),
        "splits": run_splits(wildcards),
        "truth": hidden_truth(),
    }


def summary_inputs(wildcards) -> dict[str, Any]:
    """summarize_models reads every model's metrics and predictions and the late fusion."""
    models, run = summary_models(), wildcards.run
    return {
        "metrics": model_files(run, models, "metrics.json"),
        "predictions": model_files(run, models, "predictions.csv"),
        "fusion": f"{run}/late_fusion.json",
        "truth": hidden_truth(),
    }


def cv_inputs(wildcards) -> dict[str, list[str]]:
    """summarize_cv reads every fold's late fusion and model metrics."""
    models = summary_models()
    return {
        "fusion": [f"{run}/late_fusion.json" for run in RUNS],
        "metrics": [f for run in RUNS for f in model_files(run, models, "metrics.json")],
    }


def final_targets() -> list:
    """The default target: every run's late fusion (which needs the whole DAG) and summary table,
    the k-fold summary, and the per-stage summaries of the report."""
    out: list = [f for run in RUNS for f in (f"{run}/late_fusion.json", f"{run}/summary.csv")]
    if FOLDS:
        out.append(f"{R}/cv_summary.json")
    return out + static_targets() + [audio_targets, face_targets, cnn_targets]


# --- clip-level video networks (rules/video_models.smk)

from avfer.models.video.settings import video_settings

VIDEO_MODEL_RE = PLAN.video_model_re


def video_models() -> list[str]:
    """The video networks of the config (video_models.models)."""
    return PLAN.video_models


def video_model_inputs(wildcards) -> dict[str, Any]:
    """train_video_model reads every face cache, plus the model's local pretrained weights."""
    own = config["video_models"]["per_model"].get(wildcards.video_model) or {}
    init = own.get("pretrained_path")
    return {"faces": face_shards(), "splits": run_splits(wildcards), **({"init": init} if init else {})}


def video_model_settings(wildcards) -> dict[str, Any]:
    """The result-affecting settings of one video network (params of train_video_model)."""
    return video_settings(wildcards.video_model, config["video_models"])


# --- bundles for avfer predict (rules/bundle.smk)


bundle_models = PLAN.bundle_models  # the fused models beside the bundle's face CNN


def bundle_inputs(wildcards) -> dict[str, Any]:
    """export_bundle packages the first backbone's face CNN, the late fusion and its models, of
    the run bundle.fold names (k-fold protocols; else the only run)."""
    run = PLAN.bundle_run
    return {
        "face": f"{run}/models/cnn_{backbones()[0]}/model.pt",
        "fusion": f"{run}/late_fusion.json",
        "models": model_files(run, bundle_models(), "model.pt"),
        "cnns": model_files(run, PLAN.bundle_cnns(), "model.pt"),
    }


# --- several runs of one model as separate ensemble members (rules/seeds.smk): <model>@seed<k>

SEQUENCE_MODEL_RE = PLAN.sequence_model_re


def seeded_section(wildcards) -> str:
    """The config section of a seeded sequence model (<model>@seed<k>)."""
    return PLAN.sequence_section(wildcards.model)


def seeded_settings(wildcards) -> dict[str, Any]:
    """The result-affecting settings of a seeded sequence model's section."""
    return result_settings(config[seeded_section(wildcards)])


def seeded_inputs(wildcards) -> dict[str, Any]:
    """A seeded sequence model reads what its base model reads (early fusion: the base models'
    encoders; a temporal head: the base CNN's features)."""
    from types import SimpleNamespace

    from avfer.models.names import parse_model_name

    parsed = parse_model_name(wildcards.model)
    w = SimpleNamespace(run=wildcards.run, backbone=parsed.backbone, option=parsed.option)
    if parsed.family == "temporal":
        return temporal_inputs(w)
    if parsed.family == "audio":
        return audio_model_inputs(w)
    return early_fusion_inputs(w)


# --- static evaluation of the FER2013 image models (rules/static.smk)

STATIC_EVAL = PLAN.static_eval


def static_inputs(wildcards) -> dict[str, Any]:
    """evaluate_static reads every pre-trained backbone and the (first) FER2013 csv."""
    return {"models": [f"{R}/pretrain/{b}/model.pt" for b in backbones()], "csv": PLAN.fer2013[0]}


def static_targets() -> list[str]:
    """The static evaluation, when pretrain.evaluate_static is set."""
    return [f"{R}/static/evaluation.json"] if STATIC_EVAL else []


def scaled_mem(mb: "int | Callable[[Any], int]"):
    """A rule's mem_mb that grows with the attempt: ``mb`` (or ``mb(wildcards)``) on the first,
    2x on the first retry, ... (a job killed for memory on a cluster is resubmitted asking for
    more; `retries`)."""
    if callable(mb):
        return lambda wildcards, attempt: int(mb(wildcards)) * attempt
    return lambda wildcards, attempt: int(mb) * attempt
