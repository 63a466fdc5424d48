"""Config validation: schema defaults, misspelt keys and wrong types named in one line,
both through avfer's loader and through Snakemake itself; the shipped configs are valid."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from avfer.config import ConfigError, load_config, load_schema, validate_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"


def _walk(schema: dict, path: str = ""):
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}" if path else key)


def test_every_schema_key_is_described_and_objects_closed():
    for path, sub in _walk(load_schema()):
        if path:
            assert sub.get("description"), f"{path} has no description"
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
