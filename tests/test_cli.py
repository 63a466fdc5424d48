"""The avfer command line: make-demo, sample-sheet and check-config on a tiny demo."""

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
