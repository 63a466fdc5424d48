"""Packaging a trained pipeline run as a bundle (:mod:`avfer.bundle`) for ``avfer predict``.

:func:`export_run` writes the run's face CNN (``face_cnn.pt``, at the feature layer its members
read), every other model of the late fusion (``models/<name>.pt``: temporal heads, audio models,
early fusion, end-to-end models, video networks) and the face CNNs the bundle needs besides its
own (``cnns/<name>.pt``: fused CNNs of another backbone or seed, the CNN of another backbone whose
features a fused member reads), with the fusion's rule. Each member is loaded as its kind before
anything is written, so a run that does not survive export fails here, in one line, not in
predict. :func:`export_results` finds those files in a results folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from avfer.bundle import FACE_FILE, SPEC_FILE, BundleError, load_member, make_spec, read_late_fusion
from avfer.config import feature_settings
from avfer.errors import AvferError
from avfer.faces.align import FaceCrop
from avfer.faces.pipeline import FaceSettings
from avfer.io.atomic import atomic_path, write_json
from avfer.models.face import load_face_model, save_face_model
from avfer.models.specs import parse_model_name

Features = Mapping[str, Mapping[str, Any]]  # backbone → feature layer settings


def feature_cnn(name: str) -> str | None:
    """:attr:`avfer.models.names.ModelName.feature_cnn` of ``name``."""
    return parse_model_name(name).feature_cnn


def _parse(name: str, where: str | Path) -> Any:
    try:
        return parse_model_name(name)
    except AvferError as exc:
        raise BundleError(f"{where}: {exc}") from None


def export_run(
    model_path: str | Path,
    out_dir: str | Path,
    *,
    faces: dict[str, Any],
    aggregate: str = "mean",
    prior: list[float] | None = None,
    name: str | None = None,
    models: Mapping[str, str | Path] | None = None,
    cnns: Mapping[str, str | Path] | None = None,
    audio: dict[str, Any] | None = None,
    fusion: str | Path | None = None,
    features: Features | None = None,
) -> Path:
    """Package a pipeline's trained face CNN (``models/cnn_<backbone>/model.pt``) with the face
    stage settings it was trained on (template-aligned crops of the face cache); the clip
    aggregate is the ``cnn.aggregate`` the run used, the prior (faceless clips) the model's.

    ``models``: the other members to include (name → model.pt): sequence models, end-to-end
    models, video networks and frame CNNs (``cnn_<b2>``, ``cnn_<b>@seed<k>``); ``cnns``: face
    CNNs the members read the features of (``cnn_<b2>`` for ``bgru_<b2>``) when not members
    themselves; ``audio``: the run's ``audio`` config section (needed when a member hears);
    ``fusion``: its late_fusion.json (every fused model must be the face CNN or in ``models``);
    ``features``: per backbone the feature layer the run's members read
    (:func:`avfer.config.feature_settings`; default: each ``model.pt``'s).
    """
    features = features or {}
    model, extra = load_face_model(model_path)
    backbone = model.spec["backbone"]
    if backbone in features:
        model, extra = load_face_model(model_path, features=features[backbone])
    prior = prior if prior is not None else extra.get("prior")
    s = FaceSettings.from_config(faces)
    crop = FaceCrop("template", size=s.crop_size, margin=s.margin)
    main = f"cnn_{backbone}"
    spec = make_spec(
        name or main, model, crop, s.result_config(), aggregate=aggregate, prior=prior, source=str(model_path)
    )
    where = fusion or model_path
    members = {m: Path(p) for m, p in (models or {}).items() if m != main}
    parsed = {m: _parse(m, where) for m in members}
    clip_models = [m for m in members if parsed[m].family != "cnn"]
    frame_cnns = {m: p for m, p in members.items() if parsed[m].family == "cnn"}
    needed = {src: m for m in clip_models if (src := feature_cnn(m)) not in (None, main)}
    sources = {**{c: Path(p) for c, p in (cnns or {}).items()}, **frame_cnns}
    if missing := [(c, m) for c, m in needed.items() if c not in sources]:
        c, m = missing[0]
        raise BundleError(f"{where}: {m} reads the features of {c}; export its model.pt too (cnns)")
    fused = read_late_fusion(fusion)["models"] if fusion is not None else []
    if missing_fused := sorted(set(fused) - set(members) - {main}):
        raise BundleError(
            f"{fusion}: fused models {missing_fused} are not exported (only {main} and {sorted(members)})"
        )
    for m in clip_models:  # each loads as its kind, or the export stops here, before writing
        load_member(members[m], m)
    if any(parsed[m].modality != "visual" for m in clip_models):
        if audio is None:
            raise BundleError(
                f"{', '.join(clip_models)}: a model hears, so the export needs the audio config section"
            )
        spec["audio"] = dict(audio)
    extra_cnns = {}
    for c in sorted({*frame_cnns, *needed}):
        b = _parse(c, where).backbone
        extra_cnns[c] = load_face_model(sources[c], features=features.get(b))
    spec["cnns"] = [
        {"name": c, "file": f"cnns/{c}.pt", "prior": cx.get("prior"), "member": c in frame_cnns}
        for c, (_, cx) in extra_cnns.items()
    ]
    spec["models"] = [{"name": m, "file": f"models/{m}.pt", "features": feature_cnn(m)} for m in clip_models]
    if fusion is not None:
        spec["fusion"] = {**read_late_fusion(fusion), "source": str(fusion)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_face_model(out / FACE_FILE, model, extra=extra)  # at the feature layer of the run
    for c, (cnn, cx) in extra_cnns.items():
        (out / "cnns").mkdir(exist_ok=True)
        save_face_model(out / "cnns" / f"{c}.pt", cnn, extra=cx)
    for m in clip_models:
        (out / "models").mkdir(exist_ok=True)
        with atomic_path(out / "models" / f"{m}.pt") as tmp:
            shutil.copyfile(members[m], tmp)
    write_json(out / SPEC_FILE, spec)
    return out


def export_results(
    results: str | Path, out_dir: str | Path, cfg: dict[str, Any], backbone: str | None = None
) -> Path:
    """:func:`export_run` of a results folder with its config: the face CNN of ``backbone``
    (default: the first of ``cnn.backbones``) and, when ``late_fusion.json`` exists, the fused
    models, the face CNNs whose features they read, and the fusion's weights."""
    results = Path(results)
    backbone = backbone or cfg["cnn"]["backbones"][0]
    face = results / "models" / f"cnn_{backbone}" / "model.pt"
    fusion = results / "late_fusion.json"
    if not face.is_file():
        raise BundleError(f"{face}: no trained face CNN (run the pipeline first)")
    fused = read_late_fusion(fusion)["models"] if fusion.is_file() else []
    members = [m for m in fused if m != f"cnn_{backbone}"]
    sources = sorted({c for m in members if (c := feature_cnn(m)) not in (None, f"cnn_{backbone}")})

    def path(m: str) -> Path:
        return results / "models" / m / "model.pt"

    if missing := [m for m in [*members, *sources] if not path(m).is_file()]:
        raise BundleError(f"{path(missing[0])}: {missing[0]} is not trained (run the pipeline first)")
    backbones = {*cfg["cnn"]["backbones"], *(parse_model_name(m).backbone for m in [*members, *sources])}
    return export_run(
        face, out_dir, faces=cfg["faces"], aggregate=cfg["cnn"]["aggregate"],
        models={m: path(m) for m in members}, cnns={c: path(c) for c in sources}, audio=cfg.get("audio"),
        fusion=fusion if fusion.is_file() else None,
        features={b: feature_settings(cfg["cnn"], b) for b in backbones if b},
    )  # fmt: skip
