"""A user's own config, as a new user writes it: only a ``dataset:`` section (a manifest of
generated clips with speaker groups and labelled test clips, file names with spaces and accents).
It runs end to end on the schema's defaults without any demo artifact, scores the labelled test
clips, and then the same data in a 3-fold subject-independent protocol gives cv_summary.json."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from avfer.demo import make_demo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg"),
]

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"


def _snakemake(workdir: Path, configfile: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile", str(configfile)]
    return subprocess.run([*cmd, "--cores", "2", *extra], capture_output=True, text=True, timeout=2400)


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """Generated clips in a folder of the user's, listed by a manifest (path, split, label, group)."""
    base = tmp_path_factory.mktemp("user")
    media = base / "my clips"
    make_demo(media, seed=5, clips_per_class=2, min_seconds=1.0, max_seconds=1.6, frame_size=112,
              fer_per_class=1, no_audio_clips=1, face_exit_clips=0)  # fmt: skip
    with open(media / "demo_truth.csv", newline="") as fh:
        truth = list(csv.DictReader(fh))
    rows = []
    for i, rec in enumerate(truth):
        src = media / rec["path"]
        dst = src.with_name(f"clip {i:02d} é.{src.name}")  # a space, an accent, two dots
        src.rename(dst)
        group = f"speaker{i // 2}"  # two clips per speaker
        rows.append(
            {
                "path": str(dst.relative_to(media)),
                "split": rec["split"],
                "label": rec["label"],
                "group": group,
            }
        )
    (media / "fer2013.csv").unlink()
    (media / "demo_truth.csv").unlink()
    manifest = media / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    workdir = base / "work"
    workdir.mkdir()
    configfile = base / "mine.yaml"
    configfile.write_text(yaml.safe_dump({"dataset": {"format": "manifest", "manifest": str(manifest)}}))
    proc = _snakemake(workdir, configfile)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return {
        "base": base,
        "workdir": workdir,
        "manifest": manifest,
        "results": workdir / "results",
        "log": proc.stderr,
    }


def test_minimal_config_runs_on_schema_defaults(user):
    results = user["results"]
    fusion = json.loads((results / "late_fusion.json").read_text())
    assert not (results / "data").exists() and not (results / "pretrain").exists()  # no demo, no pre-training
    assert "no static pre-training" in user["log"]
    sheet = pd.read_csv(results / "samples.csv", dtype=str, keep_default_na=False)
    assert sheet["path"].str.contains("é").all() and sheet["clip_id"].is_unique
    assert (sheet["group"] != "").all()
    splits = pd.read_csv(results / "splits.csv", dtype=str, keep_default_na=False)
    dev = splits[splits["split"] == "dev"]
    train = splits[splits["split"] == "train"]
    assert len(dev) and not set(dev["group"]) & set(train["group"])  # grouped: no speaker in both
    # every trained model of the schema defaults is fused, and the labelled test clips are scored
    models = set(fusion["models"])
    assert {"cnn_resnet10t", "gru_resnet10t", "audio_mlp", "audio_gru"} <= models
    assert any(m.startswith("early") for m in models)
    assert fusion["test"]["n"] == 14 and fusion["protocol"]["model_selection"] == "dev"
    for model in models:
        metrics = json.loads((results / "models" / model / "metrics.json").read_text())
        assert metrics["test"]["n"] == 14, model
    summary = pd.read_csv(results / "summary.csv")
    assert summary["test_accuracy"].notna().all()
    audio = pd.read_csv(results / "models" / "audio_mlp" / "predictions.csv", keep_default_na=False)
    assert (audio["status"] == "no_audio").sum() == 1  # the clip without an audio track: the fallback


def test_check_config_prints_the_resolved_config(user, capsys):
    from avfer.cli import main

    assert main(["check-config", str(user["base"] / "mine.yaml"), "--print"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["dataset"]["generate_demo"] is False and resolved["pretrain"]["datasets"] == []
    assert resolved["fusion"]["models"] == [] and resolved["dataset"]["dev_fraction"] == 0.15


def test_kfold_protocol_summary(user):
    """Three subject-independent folds over the same clips (the caches are reused): each fold's
    test speakers are in no other split of that fold; cv_summary.json has mean ± std. It checks the
    protocol, not what the models learn (the minimal run above trains the defaults), so each
    fold trains for two epochs."""
    short = {"train": {"epochs": 2}}
    cfg = {
        "dataset": {"format": "manifest", "manifest": str(user["manifest"]), "folds": 3},
        "cnn": short,
        "temporal": {"heads": ["gru"], **short},
        "audio_models": {"models": ["mlp"], **short},
        "early_fusion": {"options": ["a"], **short},
    }
    configfile = user["base"] / "folds.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = _snakemake(user["workdir"], configfile)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "detect_faces" not in proc.stderr  # the face and audio caches of the first run serve every fold
    results = user["results"]
    summary = json.loads((results / "cv_summary.json").read_text())
    assert summary["folds"] == 3 and len(summary["late_fusion"]["per_fold"]) == 3
    assert summary["protocol"]["val"] == "carved"  # fold k tests, the other two train (val, dev carved)
    assert summary["late_fusion"]["accuracy"]["std"] is not None
    assert set(summary["models"]) == {
        "cnn_resnet10t",
        "gru_resnet10t",
        "audio_mlp",
        "earlya_resnet10t",
    }
    tested = []
    for k in range(3):
        splits = pd.read_csv(results / f"fold-{k}" / "splits.csv", dtype=str, keep_default_na=False)
        test_groups = set(splits.loc[splits["split"] == "test", "group"])
        assert test_groups and not test_groups & set(splits.loc[splits["split"] != "test", "group"])
        tested += splits.loc[splits["split"] == "test", "clip_id"].tolist()
    assert len(tested) == len(set(tested)) == 42  # every labelled clip is tested exactly once
    # results/bundle of a k-fold run packages the fold bundle.fold names (its face CNN and fusion)
    cfg["bundle"] = {"fold": 1}
    configfile.write_text(yaml.safe_dump(cfg))
    proc = _snakemake(user["workdir"], configfile, "--", "results/bundle")  # relative to the workdir
    assert proc.returncode == 0, proc.stderr[-5000:]
    spec = json.loads((results / "bundle" / "bundle.json").read_text())
    assert spec["source"].endswith("fold-1/models/cnn_resnet10t/model.pt"), spec["source"]
    assert spec["fusion"]["source"].endswith("fold-1/late_fusion.json")
    fold1 = json.loads((results / "fold-1" / "late_fusion.json").read_text())
    assert spec["fusion"]["models"] == list(fold1["weights"])
    print(
        "k-fold summary:", json.dumps({k: summary["late_fusion"][k] for k in ("accuracy", "uar", "macro_f1")})
    )
