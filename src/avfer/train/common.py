"""What every trainer shares besides the loop: class weights, resume checkpoints, the fallback
of clips a model cannot see, the optimiser, the learning-rate schedule, layer freezing, and
:func:`train_model`, which fits any model from a ``train`` config block with all of them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from avfer.errors import AvferError
from avfer.io.hdf5 import config_hash
from avfer.labels import NUM_CLASSES
from avfer.train.loop import FitResult, fit

log = logging.getLogger(__name__)


def class_weights(targets: Sequence[int] | np.ndarray, enabled: bool = True) -> torch.Tensor | None:
    """Balanced loss weights (scikit-learn's ``compute_class_weight``: n / (classes x count)) over
    the classes present in ``targets``; 0 for absent classes; None when not ``enabled``."""
    if not enabled:
        return None
    y = np.asarray(targets, dtype=int)
    y = y[y >= 0]
    present = np.unique(y)
    w = np.zeros(NUM_CLASSES)
    if len(present):
        w[present] = compute_class_weight("balanced", classes=present, y=y)
    return torch.tensor(w, dtype=torch.float32)


def train_prior(targets: Sequence[int] | np.ndarray) -> np.ndarray:
    """The one fallback of every model for a clip it cannot see (no face, no audio, failed,
    no video): the class frequencies of the training clips (smoothed, summing to 1)."""
    y = np.asarray(targets, dtype=int)
    counts = np.bincount(y[y >= 0], minlength=NUM_CLASSES).astype(np.float64) + 1e-3
    return counts / counts.sum()


def file_stamps(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of each input: part of the resume hash, so new inputs start afresh."""
    return [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]


def resume_path(folder: str | Path, *parts: Any) -> Path:
    """``<folder>/resume-<hash>.pt`` for this config + inputs; stale resume files are removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"resume-{config_hash(parts)}.pt"
    for old in folder.glob("resume-*.pt"):
        if old != path:
            log.info("removing stale resume checkpoint %s", old)
            old.unlink()
    return path


# --- schedules and freezing (the ``train`` block of every trainer)

SCHEDULES = ("cosine", "constant", "staircase", "plateau")


@dataclass
class Schedule:
    """A learning-rate scheduler and when :func:`avfer.train.fit` steps it: ``epoch`` (after each
    epoch), ``step`` (after each optimiser step) or ``plateau`` (after each epoch, on the dev score)."""

    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None
    interval: str = "epoch"


def build_scheduler(
    optimizer: torch.optim.Optimizer, train_cfg: Mapping[str, Any], steps_per_epoch: int
) -> Schedule:
    """The schedule named by ``train_cfg["schedule"]`` (default ``cosine``):

    * ``cosine``: cosine annealing to 0 over ``epochs``, stepped per epoch;
    * ``constant``: the learning rate never changes;
    * ``staircase``: x ``lr_decay_gamma`` every ``lr_decay_steps`` optimiser steps (the thesis:
      0.95 every 5,000);
    * ``plateau``: x ``plateau_factor`` after ``plateau_patience`` epochs without a better dev score.
    """
    kind = train_cfg.get("schedule", "cosine")
    if kind == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(train_cfg["epochs"])))
        return Schedule(sched, "epoch")
    if kind == "constant":
        return Schedule(None, "epoch")
    if kind == "staircase":
        every = int(train_cfg.get("lr_decay_steps", 5000))
        total = int(train_cfg["epochs"]) * max(1, steps_per_epoch)
        if every > total:
            log.info("staircase schedule: %d steps in all, below lr_decay_steps %d (LR stays)", total, every)
        gamma = float(train_cfg.get("lr_decay_gamma", 0.95))
        return Schedule(torch.optim.lr_scheduler.StepLR(optimizer, step_size=every, gamma=gamma), "step")
    if kind == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=float(train_cfg.get("plateau_factor", 0.1)),
            patience=int(train_cfg.get("plateau_patience", 2)),
        )
        return Schedule(sched, "plateau")
    raise AvferError(f"train.schedule {kind!r} is not one of {', '.join(SCHEDULES)}")


def _is_head(name: str) -> bool:
    return name == "head" or name.startswith("head.") or ".head." in f".{name}."


def layer_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in definition order: the modules that hold parameters of their own
    (conv, batch-norm, linear, recurrent), the classifier (``head``) excluded."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if name and not _is_head(name) and any(True for _ in m.parameters(recurse=False))
    ]


def freeze_first(model: nn.Module, n: int) -> list[str]:
    """Freeze (``requires_grad = False``) the first ``n`` layers of :func:`layer_modules`; returns
    their names. Their batch-norm statistics still update in train mode."""
    frozen = layer_modules(model)[: max(0, int(n))]
    for _, module in frozen:
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
    return [name for name, _ in frozen]


def staged_training(model: nn.Module, head_epochs: int) -> Callable[[int], None] | None:
    """The classifier-first schedule: a hook for :func:`avfer.train.fit` that trains only the
    classifier (``head``) in the first ``head_epochs`` epochs, then every parameter that was
    trainable when the hook was made (layers frozen before stay frozen). None when 0."""
    if head_epochs <= 0:
        return None
    body = [p for name, p in model.named_parameters() if p.requires_grad and not _is_head(name)]
    if not any(_is_head(name) for name, _ in model.named_parameters()):
        raise AvferError(f"train.head_epochs: {type(model).__name__} has no classifier named head")

    def before_epoch(epoch: int) -> None:
        for p in body:
            p.requires_grad_(epoch >= head_epochs)

    return before_epoch


def make_optimizer(
    model: nn.Module, train_cfg: Mapping[str, Any], lr_scales: Mapping[str, float] | None = None
) -> torch.optim.Optimizer:
    """AdamW (or SGD with Nesterov momentum 0.9 / plain Adam by ``train_cfg["optimizer"]``) over the
    trainable parameters; ``lr_scales`` ({submodule name: factor}) gives a submodule's parameters
    ``lr`` x factor. A parameter frozen for a stage only gets no gradient, so no update."""
    kind, lr, wd = train_cfg.get("optimizer", "adamw"), train_cfg["lr"], train_cfg["weight_decay"]
    params: list = [p for p in model.parameters() if p.requires_grad]
    if lr_scales:  # parameter groups: the parameters under a module name get lr x its scale
        scaled = {id(p): s for name, s in lr_scales.items() for p in model.get_submodule(name).parameters()}
        rest = [p for p in params if id(p) not in scaled]
        groups = [{"params": rest, "lr": lr}] if rest else []
        for name, s in lr_scales.items():
            own = [p for p in model.get_submodule(name).parameters() if p.requires_grad]
            groups += [{"params": own, "lr": lr * s}] if own else []
        params = groups
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, nesterov=True)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def train_model(
    model: nn.Module,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader,
    hp: Mapping[str, Any],
    *,
    score: Callable[[np.ndarray, np.ndarray], float],
    weights: torch.Tensor | None,
    device: torch.device,
    seed: int,
    checkpoint: Path | None,
    stop_after: int | None = None,
    freeze_root: nn.Module | None = None,
    lr_scales: Mapping[str, float] | None = None,
) -> FitResult:
    """:func:`avfer.train.fit` with the hyper-parameters ``hp`` (a ``train`` config block: epochs,
    lr, weight_decay, optimizer, schedule, freeze_first, head_epochs, patience, grad_clip, amp),
    class-weighted cross-entropy (``weights``), ``freeze_first`` counted in ``freeze_root``
    (default: the model's ``backbone``, else the model) and ``lr_scales`` (:func:`make_optimizer`)."""
    root = freeze_root if freeze_root is not None else getattr(model, "backbone", model)
    frozen = freeze_first(root, hp.get("freeze_first", 0))
    if frozen:
        log.info("frozen first %d layers (%s ... %s)", len(frozen), frozen[0], frozen[-1])
    opt = make_optimizer(model, hp, lr_scales)
    sched = build_scheduler(opt, hp, len(train_loader))
    criterion = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None)
    return fit(
        model,
        train_loader,
        val_loader,
        criterion=criterion,
        optimizer=opt,
        scheduler=sched.scheduler,
        scheduler_interval=sched.interval,
        before_epoch=staged_training(model, hp.get("head_epochs", 0)),
        score=score,
        epochs=int(hp["epochs"]),
        device=device,
        seed=seed,
        patience=hp["patience"] or None,
        amp=bool(hp["amp"]),
        grad_clip=hp["grad_clip"] or None,
        checkpoint=checkpoint,
        stop_after=stop_after,
    )
