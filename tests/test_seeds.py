"""Several runs of one model as separate ensemble members: <model>@seed<k>."""

import shutil
import subprocess
import sys
from pathlib import Path

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
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    cfg["dataset"]["root"] = str(tmp_path / "demo")
    cfg["fusion"]["models"] = [
        "cnn_mini_xception",
        "cnn_mini_xception@seed1",
        "gru_mini_xception@seed2",
        "audio_mlp@seed3",
        "earlyb_mini_xception@seed1",
    ]
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = dict(
        line.split()
        for line in proc.stdout.splitlines()
        if line.strip().startswith(("finetune_cnn", "train_sequence_seeded")) and len(line.split()) == 2
    )
    assert jobs == {"finetune_cnn": "1", "finetune_cnn_seeded": "1", "train_sequence_seeded": "3"}
    for member in ("cnn_mini_xception@seed1", "gru_mini_xception@seed2", "earlyb_mini_xception@seed1"):
        assert f"models/{member}/predictions.csv" in proc.stdout
