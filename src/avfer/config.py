"""Load and validate a config file against the schema (``config/schema.yaml``), filling defaults.

The config a run uses is the user's file(s) (merged in order, like repeated ``--configfile``)
completed from the schema's defaults, or the demo (``config/config.yaml``) when no file is
given. ``rules/common.smk`` resolves it with :func:`validate_config`; this module gives the CLI,
the scripts and the tests the same behaviour without Snakemake.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from avfer.errors import AvferError

# The schema ships in the package (src/avfer/schema.yaml: a link to config/schema.yaml in a checkout,
# the file itself once installed); the demo config exists only in a checkout.
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"

# Settings that never change a result: how a job runs, not what it computes.
NOT_RESULTS = ("resources", "device", "eval_batch_size", "workers", "protect", "max_failed_fraction")
# cnn keys that choose which layer of a trained CNN is read as features (extract_cnn_features, the
# end-to-end models, the bundle): the CNN trainers' weights never depend on them.
FEATURE_KEYS = ("feature_layer", "feature_layers", "feature_map_size")


class ConfigError(AvferError, ValueError):
    """A config that does not match the schema (the message names the key)."""


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """Read the config schema (default: the package's, :data:`SCHEMA_PATH`)."""
    with open(path or SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _fill_defaults(cfg: dict[str, Any], schema: Mapping[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in cfg and "default" in sub:
            cfg[key] = copy.deepcopy(sub["default"])
        if isinstance(cfg.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(cfg[key], sub)


def validate_config(
    cfg: Mapping[str, Any], schema: Mapping[str, Any] | None = None, *, source: str = "config"
) -> dict[str, Any]:
    """Return a validated copy of ``cfg`` with defaults filled in, or raise :class:`ConfigError`."""
    schema = schema or load_schema()
    out = copy.deepcopy(dict(cfg))
    _fill_defaults(out, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(out), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: {where}: {err.message}")
    return out


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Deep-merge ``update`` into ``base`` (Snakemake's rule for several config files)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """One config file as a mapping (one-line error naming the file otherwise)."""
    try:
        with open(path) as fh:
            cfg = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {str(exc).splitlines()[0]}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return cfg


def load_config(
    path: str | Path | Sequence[str | Path] | None = None, schema_path: str | Path | None = None
) -> dict[str, Any]:
    """The config a run with these files would use: the files merged in order and completed from
    the schema's defaults; no file = the demo config (see :func:`validate_config`)."""
    paths = [DEMO_CONFIG] if path is None else [path] if isinstance(path, str | Path) else list(path)
    cfg: dict[str, Any] = {}
    for p in paths:
        _merge(cfg, read_yaml(p))
    return validate_config(cfg, load_schema(schema_path), source=", ".join(str(p) for p in paths))


def feature_settings(cnn: Mapping[str, Any], backbone: str) -> dict[str, Any]:
    """The feature layer of ``backbone``'s CNN (``cnn.feature_layers[backbone]``, else
    ``cnn.feature_layer``) and ``cnn.feature_map_size``: the :data:`FEATURE_KEYS` resolved."""
    layer = (cnn.get("feature_layers") or {}).get(backbone) or cnn.get("feature_layer") or "penultimate"
    return {"feature_layer": layer, "feature_map_size": cnn.get("feature_map_size")}


def result_settings(section: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    """A config section without the keys that do not change results (:data:`NOT_RESULTS`, also
    inside its ``train`` sub-section) and without ``drop``: what a rule's ``params`` carry."""
    skip = set(NOT_RESULTS) | set(drop)
    out = {k: copy.deepcopy(v) for k, v in section.items() if k not in skip}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k not in NOT_RESULTS}
    return out
