"""Several runs of one model as separate ensemble members: <model>@seed<k>."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from avfer.models.specs import parse_model_name

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"


def test_seeded_names_parse_to_their_base_model():
    m = parse_model_name("bgru_att_resnet50@seed3")
    assert (m.family, m.head, m.backbone, m.seed) == ("temporal", "bgru_att", "resnet50", 3)
    assert parse_model_name("audio_mlp@seed1").inputs == parse_model_name("audio_mlp").inputs
    assert parse_model_name("cnn_vgg16").seed is None


def test_seeded_members_get_their_own_jobs(tmp_path):
    cfg = _demo_config(tmp_path)
    cfg["fusion"]["models"] = [
        "cnn_mini_xception",
        "cnn_mini_xception@seed1",
        "gru_mini_xception@seed2",
        "audio_mlp@seed3",
        "earlyb_mini_xception@seed1",
        "e2e_gru_mini_xception@seed1",
        "e2e_earlyb_mini_xception@seed2",
        "c3d_2layer@seed1",
    ]
    proc = _dry_run(cfg, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seeded = ("finetune_cnn", "train_sequence_seeded", "train_end_to_end", "train_video_model")
    jobs = dict(
        line.split()
        for line in proc.stdout.splitlines()
        if line.strip().startswith(seeded) and len(line.split()) == 2
    )
    assert jobs == {
        "finetune_cnn": "1",
        "finetune_cnn_seeded": "1",
        "train_sequence_seeded": "3",
        "train_end_to_end_seeded": "2",
        "train_video_model": "1",  # the demo's c3d_2layer: the summary lists every trained model
        "train_video_model_seeded": "1",
    }, jobs
    for member in cfg["fusion"]["models"][1:]:
        assert f"models/{member}/predictions.csv" in proc.stdout


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        ("bgru_resnet50@seed1", "resnet50 is not in cnn.backbones (mini_xception)"),
        ("e2e_gru_vgg16", "vgg16 is not in cnn.backbones (mini_xception)"),
        ("r2plus1d_18@seed1", "r2plus1d_18 is not in video_models.models (c3d_2layer)"),
    ],
)
def test_a_member_the_workflow_cannot_train_is_one_line(tmp_path, member, problem):
    cfg = _demo_config(tmp_path)
    cfg["fusion"]["models"] = ["cnn_mini_xception", member]
    proc = _dry_run(cfg, tmp_path)
    assert proc.returncode != 0
    expected = f"config: fusion.models lists {member}, which the workflow cannot train: {problem}"
    assert expected in proc.stdout + proc.stderr


def _demo_config(tmp_path: Path) -> dict:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["dataset"]["root"] = str(tmp_path / "demo")
    return cfg


def _dry_run(cfg: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_the_summary_names_each_metrics_file_it_reads(tmp_path):
    """summarize_models zips its params' model names with its input files (strict): both come
    from one list, so seeded members (fused, not in the trained list) keep the zip aligned."""
    import re

    from rule_blocks import rule_blocks

    from avfer.config import validate_config
    from avfer.plan import Plan

    _, block = rule_blocks()["summarize_models"]
    assert re.search(r"models=summary_models\(\)", block), block
    common = (ROOT / "rules" / "common.smk").read_text()
    body = re.search(r"^def summary_inputs\(.*?(?=^\S)", common, re.M | re.S).group(0)
    assert "models, run = summary_models(), wildcards.run" in body
    cfg = _demo_config(tmp_path)
    cfg["fusion"]["models"] = ["cnn_mini_xception", "gru_mini_xception@seed2", "audio_mlp@seed3"]
    plan = Plan(validate_config(cfg))
    models = plan.summary_models()
    assert {"gru_mini_xception@seed2", "audio_mlp@seed3"} <= set(models) and len(models) == len(set(models))
    assert set(plan.trained_models()) < set(models)  # what the old params listed: a shorter zip
