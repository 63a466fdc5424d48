# Config validation, the sample sheet, the protocol runs, wildcard constraints and input functions.
# Only this file defines Python functions; the other rule files hold rules.

import os
import re

from typing import Any

import pandas as pd

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from avfer.config import ConfigError, load_schema, result_settings, validate_config
from avfer.datasets import SPLITS, dataset_fingerprint, read_sample_sheet
from avfer.io.hdf5 import set_file_locking


SCHEMA = os.path.join(workflow.basedir, "config/schema.yaml")
try:
    # the user's config (or the demo's, see the Snakefile), completed from the schema's defaults
    config.update(validate_config(config, load_schema(SCHEMA)))
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None  # one line naming the key, not the whole schema
validate(config, schema="../config/schema.yaml")

R = config["results"]
DATA = config["dataset"]
DEMO_TRUTH = f"{DATA['root']}/demo_truth.csv"
set_file_locking(config["hdf5_file_locking"])  # off on NFS / Lustre (docs/cluster.md); jobs inherit it

# Protocol runs: one (results/) on the dataset's splits, or one per fold (results/fold-<k>/).
# Faces, audio and pre-training are shared; models, features and fusion are per run.
FOLDS = DATA["folds"]
RUNS = [f"{R}/fold-{k}" for k in range(FOLDS)] if FOLDS else [R]


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"(train|val|test)-\d\d\d+",
    run="|".join(re.escape(r) for r in RUNS),


def run_fold(run: str) -> int | None:
    """The fold index of a run folder (None for the single run on the dataset's splits)."""
    return RUNS.index(run) if FOLDS else None


def dataset_inputs(wildcards) -> list[str]:
    """What the sample sheet depends on: the generated demo dataset or the manifest file."""
    if DATA["generate_demo"]:
        return [DEMO_TRUTH]
    return [DATA["manifest"]] if DATA["format"] == "manifest" and DATA["manifest"] else []


def dataset_files() -> str:
    """A fingerprint of the dataset's media files (the sheet is rebuilt when files are added)."""
    return "" if DATA["generate_demo"] or DATA["format"] == "manifest" else dataset_fingerprint(DATA)


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

# cnn keys that shape the pre-trained model (pretrain_cnn re-runs only when these change)
CNN_MODEL_KEYS = ("input_size", "in_chans", "normalization", "augment", "pretrained_path", "amp",
                  "pretrained_paths", "pretrained", "feature_layer", "feature_layers", "feature_map_size")  # fmt: skip
# static pre-training runs when pretrain.datasets lists datasets (pretrain.enabled: null), or as forced
_PRE = config["pretrain"]
PRETRAIN = bool(_PRE["datasets"]) if _PRE["enabled"] is None else _PRE["enabled"]
if PRETRAIN and not _PRE["datasets"]:
    raise WorkflowError("config: pretrain.enabled is true but pretrain.datasets lists no dataset")
if config["cnn"]["backbones"] and not PRETRAIN:
    _why = "pretrain.enabled is false" if _PRE["enabled"] is False else "pretrain.datasets is empty"
    _init = config["cnn"]["pretrained_path"] or "random initialisation"
    logger.info(f"avfer: no static pre-training ({_why}); the CNNs are fine-tuned from {_init}")


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


def backbones() -> list[str]:
    """The CNN backbones of the config (each gets features, temporal heads, early fusion)."""
    return list(config["cnn"]["backbones"])


HEAD_RE = r"b?(gru|lstm)(_att)?"
AUDIO_MODEL_RE = "mlp|gru"
OPTION_RE = "[abcd]"
BACKBONE_RE = "|".join(re.escape(b) for b in backbones()) or "(?!)"


def trained_models() -> list[str]:
    """Every model the config trains: cnn_<b>, <head>_<b>, audio_<m>, early<option>_<b>,
    e2e_<model>_<b>, the video networks."""
    out = [f"cnn_{b}" for b in backbones()]
    out += [f"{h}_{b}" for b in backbones() for h in config["temporal"]["heads"]]
    out += [f"audio_{m}" for m in config["audio_models"]["models"]]
    out += [f"early{o}_{b}" for b in backbones() for o in config["early_fusion"]["options"]]
    out += [f"e2e_{m}_{b}" for b in backbones() for m in config["end_to_end"]["models"]]
    out += video_models()  # rules/video_models.smk (defined at the end of this file)
    return out


def fused_models() -> list[str]:
    """The models of the late fusion (fusion.models; empty = every trained model)."""
    return list(config["fusion"]["models"]) or trained_models()


def summary_models() -> list[str]:
    """Models in the summary table: every trained model, plus any other fused model."""
    models = trained_models()
    return models + [m for m in fused_models() if m not in models]


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


E2E_MODEL_RE = rf"({HEAD_RE}|early{OPTION_RE})"
for _m in config["end_to_end"]["models"]:
    _trained = _m in config["temporal"]["heads"] or _m.removeprefix("early") in config["early_fusion"]["options"]
    if not _trained:
        raise WorkflowError(
            f"config: end_to_end.models lists {_m}, which temporal.heads / early_fusion.options do not train"
        )


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


def fusion_inputs(wildcards) -> dict[str, list[str]]:
    """fuse_late reads the fused models' predictions (and hidden test labels, if any)."""
    return {"predictions": model_files(wildcards.run, fused_models(), "predictions.csv"), "truth": hidden_truth()}


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

VIDEO_MODEL_RE = "|".join(re.escape(m) for m in config["video_models"]["models"]) or "(?!)"


def video_models() -> list[str]:
    """The video networks of the config (video_models.models)."""
    return list(config["video_models"]["models"])


def video_model_inputs(wildcards) -> dict[str, Any]:
    """train_video_model reads every face cache, plus the model's local pretrained weights."""
    own = config["video_models"]["per_model"].get(wildcards.video_model) or {}
    init = own.get("pretrained_path")
    return {"faces": face_shards(), "splits": run_splits(wildcards), **({"init": init} if init else {})}


def video_model_settings(wildcards) -> dict[str, Any]:
    """The result-affecting settings of one video network (params of train_video_model)."""
    return video_settings(wildcards.video_model, config["video_models"])


# --- bundles for avfer predict (rules/bundle.smk)


def bundle_models() -> list[str]:
    """The trained sequence models results/bundle/ packages: the fused ones (not frame CNNs)."""
    return [m for m in fused_models() if not m.startswith("cnn_")]


def bundle_inputs(wildcards) -> dict[str, Any]:
    """export_bundle packages the first backbone's face CNN, the late fusion and its models."""
    return {
        "face": f"{R}/models/cnn_{backbones()[0]}/model.pt",
        "fusion": f"{R}/late_fusion.json",
        "models": model_files(R, bundle_models(), "model.pt"),
    }


# --- several runs of one model as separate ensemble members (rules/seeds.smk): <model>@seed<k>

SEQUENCE_MODEL_RE = rf"(({HEAD_RE}|early{OPTION_RE})_({BACKBONE_RE})|audio_({AUDIO_MODEL_RE}))"
SEQUENCE_SECTION = {"temporal": "temporal", "audio": "audio_models", "early_fusion": "early_fusion"}


def seeded_section(wildcards) -> str:
    """The config section of a seeded sequence model (<model>@seed<k>)."""
    from avfer.models.specs import parse_model_name

    return SEQUENCE_SECTION[parse_model_name(wildcards.model).family]


def seeded_settings(wildcards) -> dict[str, Any]:
    """The result-affecting settings of a seeded sequence model's section."""
    return result_settings(config[seeded_section(wildcards)])


def seeded_inputs(wildcards) -> dict[str, Any]:
    """A seeded sequence model reads what its base model reads (early fusion: the base models'
    encoders; a temporal head: the base CNN's features)."""
    from types import SimpleNamespace

    from avfer.models.specs import parse_model_name

    parsed = parse_model_name(wildcards.model)
    w = SimpleNamespace(run=wildcards.run, backbone=parsed.backbone, option=parsed.option)
    if parsed.family == "temporal":
        return temporal_inputs(w)
    if parsed.family == "audio":
        return audio_model_inputs(w)
    return early_fusion_inputs(w)


def fusion_member_problem(name: str) -> str | None:
    """Why the workflow cannot train the fused model ``name`` (None when it can)."""
    from avfer.models.specs import parse_model_name

    parsed = parse_model_name(name)
    if parsed.family == "video":
        base = name.split("@")[0]
        known = video_models()
        return None if base in known else f"{base} is not in video_models.models ({', '.join(known) or 'none'})"
    if parsed.backbone is not None and parsed.backbone not in backbones():
        return f"{parsed.backbone} is not in cnn.backbones ({', '.join(backbones())})"
    return None


for _m in config["fusion"]["models"]:
    _problem = fusion_member_problem(_m)
    if _problem:
        raise WorkflowError(f"config: fusion.models lists {_m}, which the workflow cannot train: {_problem}")


# --- static evaluation of the FER2013 image models (rules/static.smk)

STATIC_EVAL = config["pretrain"]["evaluate_static"]
_FER = [d["path"] for d in config["pretrain"]["datasets"] if d["format"] == "fer2013"]
if STATIC_EVAL and not (PRETRAIN and _FER):
    raise WorkflowError("config: pretrain.evaluate_static needs pre-training on a fer2013 dataset")


def static_inputs(wildcards) -> dict[str, Any]:
    """evaluate_static reads every pre-trained backbone and the (first) FER2013 csv."""
    return {"models": [f"{R}/pretrain/{b}/model.pt" for b in backbones()], "csv": _FER[0]}


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
