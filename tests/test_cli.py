"""The avfer command line: make-demo, sample-sheet and check-config on a tiny demo; check-config
rejects every config the workflow rejects (avfer.plan), with the workflow's message."""

from pathlib import Path

import pytest
import yaml

from avfer.cli import main


def test_make_demo_then_sample_sheet(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    root = tmp_path / "demo"
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataset": {"root": str(root), "shard_size": 4, "generate_demo": True},
                "demo": {
                    "clips_per_class": 1,
                    "min_seconds": 1.0,
                    "max_seconds": 2.5,
                    "fer_per_class": 2,
                    "no_audio_clips": 1,
                    "face_exit_clips": 0,
                },
            }
        )  # fmt: skip
    )
    assert main(["make-demo", "--config", str(cfg)]) == 0
    assert (root / "Train_AFEW" / "Happy").is_dir() and (root / "fer2013.csv").exists()
    capsys.readouterr()
    assert main(["sample-sheet", "--config", str(cfg), "--out", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "21 clips in 6 shards" in out  # 7 classes x 3 splits; shards of 4 per split
    assert (tmp_path / "s.csv").read_text().startswith("clip_id,path,split,label,group,fold,shard")


def test_check_config_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: one\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seed: 'one' is not of type 'integer'" in err


# Every rule of avfer.plan.Plan: a config the schema accepts but the workflow cannot run. check-config
# rejects it in one line with the message the workflow stops with (rules/common.smk builds the same Plan).
_FER = [{"format": "fer2013", "path": "fer.csv"}]
PLAN_RULES = {
    "pretrain_without_datasets": (
        {"pretrain": {"enabled": True, "datasets": []}},
        "pretrain.enabled is true but pretrain.datasets lists no dataset",
    ),
    "static_eval_without_fer2013": (
        {"pretrain": {"evaluate_static": True, "datasets": [{"format": "folder", "path": "imgs"}]}},
        "pretrain.evaluate_static needs pre-training on a fer2013 dataset",
    ),
    "static_eval_without_pretraining": (
        {"pretrain": {"evaluate_static": True, "enabled": False, "datasets": _FER}},
        "pretrain.evaluate_static needs pre-training on a fer2013 dataset",
    ),
    "end_to_end_of_an_untrained_model": (
        {"temporal": {"heads": ["gru"]}, "end_to_end": {"models": ["bgru_att"]}},
        "end_to_end.models lists bgru_att, which temporal.heads / early_fusion.options do not train",
    ),
    "fusion_member_on_another_backbone": (
        {"cnn": {"backbones": ["resnet18"]}, "fusion": {"models": ["gru_vgg16@seed1"]}},
        "fusion.models lists gru_vgg16@seed1, which the workflow cannot train: vgg16 is not in cnn.backbones"
        " (resnet18)",
    ),
    "fusion_member_video_model_not_trained": (
        {"video_models": {"models": ["c3d"]}, "fusion": {"models": ["r2plus1d_18"]}},
        "fusion.models lists r2plus1d_18, which the workflow cannot train: r2plus1d_18 is not in"
        " video_models.models (c3d)",
    ),
    "ferplus_init_of_another_backbone": (
        {"cnn": {"backbones": ["resnet18"]}},  # cnn.pretrained defaults to ferplus, a resnet10t
        "cnn.pretrained: ferplus initialises a resnet10t with 1 input channel(s) (the shipped face model),"
        " not resnet18 with 1",
    ),
    "bundle_fold_beyond_the_folds": (
        {"dataset": {"folds": 3}, "bundle": {"fold": 3}},
        "bundle.fold is 3, but dataset.folds is 3",
    ),
    "fusion_method_not_among_the_methods": (
        {"fusion": {"method": "least_squares"}},  # fusion.methods: the six default searches
        "fusion.method is least_squares, which is not in fusion.methods (majority_vote,",
    ),
    "bundle_fold_without_folds": (
        {"bundle": {"fold": 1}},
        "bundle.fold is 1, but dataset.folds is 0 (one run, no folds)",
    ),
    "fusion_member_no_model_name": (
        {"fusion": {"models": ["audio_lstm"]}},  # the schema's pattern lets audio_<anything> through
        "fusion.models lists audio_lstm, which the workflow cannot train: model name 'audio_lstm' is not",
    ),
}


@pytest.mark.parametrize("case", sorted(PLAN_RULES))
def test_check_config_rejects_what_the_workflow_rejects(case, tmp_path, capsys):
    cfg, message = PLAN_RULES[case]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"avfer: error: {path}: {message}"), err


def test_check_config_accepts_the_shipped_configs(capsys):
    root = Path(__file__).resolve().parents[1] / "config"
    for name in ("config.yaml", "afew.yaml", "afew_thesis.yaml", "face_model.yaml"):
        assert main(["check-config", str(root / name)]) == 0
    assert capsys.readouterr().out.count(": valid") == 4


def test_the_workflow_has_no_checks_of_its_own():
    """rules/*.smk raise no WorkflowError but the one that reports a ConfigError of the schema or
    the Plan: every check is avfer.plan's, shared with check-config."""
    rules = Path(__file__).resolve().parents[1] / "rules"
    raised = [(smk.name, line) for smk in rules.glob("*.smk") for line in smk.read_text().splitlines()
              if "raise WorkflowError" in line]  # fmt: skip
    assert [(f, line.split("#")[0].strip()) for f, line in raised] == [
        ("common.smk", "raise WorkflowError(str(exc)) from None")
    ]
    assert "PLAN = Plan(config)" in (rules / "common.smk").read_text()
