"""Config validation: schema defaults, misspelt keys and wrong types named in one line,
both through avfer's loader and through Snakemake itself; the shipped configs are valid."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from avfer.config import ConfigError, load_config, load_schema, validate_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"


def _walk(schema: dict, path: str = ""):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}" if path else key)


def test_every_schema_key_is_described_and_objects_closed():
    # a flow-style description with an unquoted comma splits into stray keys: caught here
    keywords = set(Draft202012Validator.VALIDATORS) | {"$schema", "description", "default", "title"}
    for path, sub in _walk(load_schema()):
        if path:
            assert sub.get("description"), f"{path} has no description"
        assert set(sub) <= keywords, f"{path}: not JSON-schema keywords: {sorted(set(sub) - keywords)}"
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{path} accepts unknown keys"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (ROOT / "config").glob("*.yaml") if p.name != "schema.yaml")
)
def test_shipped_configs_are_valid(name):
    load_config(ROOT / "config" / name)


def test_defaults_filled():
    cfg = validate_config({})
    assert cfg["seed"] == 0 and cfg["dataset"]["shard_size"] == 32 and cfg["demo"]["clips_per_class"] == 8


def test_misspelt_key_and_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset: Additional properties .*'shardsize' was unexpected"):
        validate_config({"dataset": {"shardsize": 3}})
    with pytest.raises(ConfigError, match=r"demo\.clips_per_class: 'many' is not of type 'integer'"):
        validate_config({"demo": {"clips_per_class": "many"}})
    with pytest.raises(ConfigError, match=r"\(top level\): Additional properties .*'sed'"):
        validate_config({"sed": 1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


def test_snakemake_stops_on_misspelt_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dataset": {"shard_sise": 4}}))
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "--configfile", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    want = "config: dataset: Additional properties are not allowed ('shard_sise' was unexpected)"
    assert want in proc.stdout + proc.stderr


def test_snakemake_lint_clean():
    proc = subprocess.run([SNAKEMAKE, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations" in out, out[-3000:]


def test_user_config_never_inherits_the_demo(tmp_path):
    """A config with only a dataset section resolves to the schema's defaults (no demo data, no
    pre-training, every trained model fused), for avfer and for Snakemake alike."""
    media = tmp_path / "media"
    media.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (media / name).write_bytes(b"")
    (media / "list.csv").write_text("path,split,label\na.mp4,train,Happy\nb.mp4,val,Sad\n")
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"dataset": {"format": "manifest", "manifest": str(media / "list.csv")}}))
    cfg = load_config(mine)
    assert cfg["dataset"]["generate_demo"] is False and cfg["pretrain"]["datasets"] == []
    assert cfg["fusion"]["models"] == [] and cfg["results"] == "results"
    demo = load_config()  # no file: the demo
    assert demo["dataset"]["generate_demo"] is True and demo["pretrain"]["datasets"]
    proc = subprocess.run(
        [SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(mine)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "build_sample_sheet" in out and "make_demo_dataset" not in out and "pretrain_cnn" not in out
    assert "no static pre-training" in out


def test_result_settings_leave_out_how_a_job_runs():
    from avfer.config import result_settings

    cfg = validate_config({})
    for section in ("faces", "cnn", "temporal", "audio_models", "early_fusion", "pretrain"):
        kept = result_settings(cfg[section])
        assert not {"resources", "device", "eval_batch_size", "workers", "protect"} & set(kept)
        assert "device" not in kept.get("train", {})
    assert result_settings(cfg["temporal"])["train"]["lr"] == cfg["temporal"]["train"]["lr"]


def test_feature_map_keys_validate_and_reach_the_cnn_params():
    import ast
    import re

    from avfer.config import result_settings

    cnn = validate_config({})["cnn"]
    assert (cnn["feature_layer"], cnn["feature_map_size"]) == ("penultimate", None)
    cnn = validate_config({"cnn": {"feature_layer": "map", "feature_map_size": 2}})["cnn"]
    assert (cnn["feature_layer"], cnn["feature_map_size"]) == ("map", 2)
    with pytest.raises(ConfigError, match=r"cnn\.feature_map_size: 0 is less than the minimum of 1"):
        validate_config({"cnn": {"feature_layer": "map", "feature_map_size": 0}})
    with pytest.raises(ConfigError, match=r"cnn\.feature_map_size: 'big' is not of type"):
        validate_config({"cnn": {"feature_map_size": "big"}})
    with pytest.raises(ConfigError, match=r"cnn\.feature_layer: 'maps' is not one of"):
        validate_config({"cnn": {"feature_layer": "maps"}})
    # finetune_cnn's params (every result key) and pretrain_cnn's (CNN_MODEL_KEYS) carry it
    assert result_settings(cnn)["feature_map_size"] == 2
    smk = (ROOT / "rules/common.smk").read_text()
    keys = ast.literal_eval(re.search(r"CNN_MODEL_KEYS = (\(.*?\))", smk, re.S).group(1))
    assert {"feature_layer", "feature_map_size"} <= set(keys)
