"""Load and validate a config file against ``config/schema.yaml``, filling defaults.

Snakemake validates the same schema in ``rules/common.smk``; this module gives the CLI,
the scripts and the tests the same behaviour without Snakemake.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from avfer.errors import AvferError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class ConfigError(AvferError, ValueError):
    """A config that does not match the schema (the message names the key)."""


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """Read the config schema (default: the project's ``config/schema.yaml``)."""
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


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Read a YAML config file and validate it (see :func:`validate_config`)."""
    with open(path) as fh:
        cfg = yaml.safe_load(fh) or {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    return validate_config(cfg, load_schema(schema_path), source=str(path))
