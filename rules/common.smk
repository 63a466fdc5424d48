# Config validation, the sample sheet, wildcard constraints and input functions.
# Only this file defines Python functions; the other rule files hold rules.

import os
import re

from typing import Any

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


def face_shards(split: str | None = None) -> list[str]:
    """Face caches (of one split, or of all): one per shard of the sample sheet."""
    return [f"{R}/faces/{shard}.h5" for shard in shards(split)]


def face_detect_inputs(wildcards) -> dict[str, list[str]]:
    """Besides the sheet, detect_faces reads the shard's videos."""
    sheet = sample_sheet()
    return {"videos": sheet.loc[sheet["shard"] == wildcards.shard, "path"].tolist()}


def face_split_shards(wildcards) -> list[str]:
    """The face caches of one split (summarize_faces)."""
    return face_shards(wildcards.split)


def face_targets(wildcards) -> list[str]:
    """Every face cache and the per-split face summaries (train, val, test)."""
    return face_shards() + [f"{R}/faces/summary_{split}.json" for split in SPLITS]


# --- visual CNNs (rules/cnn.smk)

# cnn keys that shape the pre-trained model (pretrain_cnn re-runs only when these change)
CNN_MODEL_KEYS = (
    "input_size",
    "in_chans",
    "normalization",
    "augment",
    "pretrained_path",
    "device",
    "amp",
    "eval_batch_size",
)


def pretrain_inputs(wildcards) -> list[str]:
    """pretrain_cnn reads the static datasets (csv files or folders) and cnn.pretrained_path."""
    init = config["cnn"]["pretrained_path"]
    return [d["path"] for d in config["pretrain"]["datasets"]] + ([init] if init else [])


def cnn_finetune_inputs(wildcards) -> dict[str, Any]:
    """finetune_cnn reads every face cache, plus the pre-trained model (pretrain.enabled) or
    the local weights of cnn.pretrained_path."""
    out: dict[str, Any] = {"faces": face_shards()}
    if config["pretrain"]["enabled"]:
        out["init"] = f"{R}/pretrain/{wildcards.backbone}/model.pt"
    elif config["cnn"]["pretrained_path"]:
        out["init"] = config["cnn"]["pretrained_path"]
    return out


def cnn_targets(wildcards) -> list[str]:
    """Every backbone's fine-tuned model, evaluation and feature caches (+ pre-training metrics)."""
    out = []
    for b in backbones():
        out += [f"{R}/models/cnn_{b}/{name}" for name in ("model.pt", "metrics.json", "confusion.svg")]
        out += feature_caches(b)
        if config["pretrain"]["enabled"]:
            out.append(f"{R}/pretrain/{b}/metrics.json")
    return out


# --- sequence models, early and late fusion (rules/temporal.smk, audio_models.smk, fusion.smk)


def backbones() -> list[str]:
    """The CNN backbones of the config (each gets features, temporal heads, early fusion)."""
    return list(config.get("cnn", {}).get("backbones", []))


HEAD_RE = r"b?(gru|lstm)(_att)?"
AUDIO_MODEL_RE = "mlp|gru"
OPTION_RE = "[abcd]"
BACKBONE_RE = "|".join(re.escape(b) for b in backbones()) or "(?!)"


def trained_models() -> list[str]:
    """Every model the config trains: cnn_<b>, <head>_<b>, audio_<m>, early<option>_<b>."""
    out = [f"cnn_{b}" for b in backbones()]
    out += [f"{h}_{b}" for b in backbones() for h in config["temporal"]["heads"]]
    out += [f"audio_{m}" for m in config["audio_models"]["models"]]
    out += [f"early{o}_{b}" for b in backbones() for o in config["early_fusion"]["options"]]
    return out


def fused_models() -> list[str]:
    """The models of the late fusion (fusion.models; empty = every trained model)."""
    return list(config["fusion"]["models"]) or trained_models()


def summary_models() -> list[str]:
    """Models in the summary table: every trained model, plus any other fused model."""
    models = trained_models()
    return models + [m for m in fused_models() if m not in models]


def model_files(models: list[str], name: str) -> list[str]:
    """``{R}/models/<model>/<name>`` for each model."""
    return [f"{R}/models/{m}/{name}" for m in models]


def hidden_truth() -> list[str]:
    """The demo's hidden test labels (scored in late_fusion.json and the summary), if any."""
    return [DEMO_TRUTH] if config["dataset"]["generate_demo"] else []


def feature_caches(backbone: str) -> list[str]:
    """The per-frame CNN feature caches of one backbone, one per shard."""
    return [f"{R}/features/{backbone}/{shard}.h5" for shard in shards()]


def temporal_inputs(wildcards) -> dict[str, list[str]]:
    """train_temporal reads the backbone's feature caches."""
    return {"features": feature_caches(wildcards.backbone)}


def audio_model_inputs(wildcards) -> dict[str, list[str]]:
    """train_audio_model reads the audio caches."""
    return {"audio": audio_shards()}


def early_fusion_inputs(wildcards) -> dict[str, Any]:
    """Feature and audio caches, plus the trained audio GRU (options b-d) and visual GRU (d)."""
    out: dict[str, Any] = {"features": feature_caches(wildcards.backbone), "audio": audio_shards()}
    if wildcards.option in "bcd":
        out["audio_encoder"] = f"{R}/models/audio_gru/model.pt"
    if wildcards.option == "d":
        head = config["early_fusion"]["visual_head"]
        out["video_encoder"] = f"{R}/models/{head}_{wildcards.backbone}/model.pt"
    return out


def fusion_inputs(wildcards) -> dict[str, list[str]]:
    """fuse_late reads the fused models' predictions (and the demo's hidden test labels)."""
    return {"predictions": model_files(fused_models(), "predictions.csv"), "truth": hidden_truth()}


def summary_inputs(wildcards) -> dict[str, Any]:
    """summarize_models reads every model's metrics and predictions and the late fusion."""
    models = summary_models()
    return {
        "metrics": model_files(models, "metrics.json"),
        "predictions": model_files(models, "predictions.csv"),
        "fusion": f"{R}/late_fusion.json",
        "truth": hidden_truth(),
    }


def final_targets() -> list:
    """The default target: the late fusion (which needs the whole DAG), the summary table of
    every model, and the per-stage summaries of the report."""
    return [f"{R}/late_fusion.json", f"{R}/summary.csv", audio_targets, face_targets, cnn_targets]


def bundle_models() -> list[str]:
    """The trained sequence models results/bundle/ packages: the fused ones (not frame CNNs)."""
    return [m for m in fused_models() if not m.startswith("cnn_")]


def bundle_inputs(wildcards) -> dict[str, Any]:
    """export_bundle packages the first backbone's face CNN, the late fusion and its models."""
    return {
        "face": f"{R}/models/cnn_{backbones()[0]}/model.pt",
        "fusion": f"{R}/late_fusion.json",
        "models": model_files(bundle_models(), "model.pt"),
    }
