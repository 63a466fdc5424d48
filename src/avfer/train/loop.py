"""A training loop anyone can read, in the style of torchvision's references.

Batches are ``(inputs, targets)`` where ``inputs`` is a tensor (``model(x)``) or a dict of
tensors (``model(**x)``). Every epoch re-seeds the global RNG and the loader's generator from
``(seed, epoch)``, and :func:`fit` saves a resumable checkpoint (model, optimiser, scheduler,
scaler, epoch, early-stopping state) after every epoch, so a run killed after epoch *k* and
resumed gives exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from avfer.device import resolve_device as resolve_device  # re-exported: the one resolver
from avfer.io.atomic import atomic_path

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor | Mapping[str, torch.Tensor], torch.Tensor]

# Tests of resuming: a job whose environment sets this to k raises KeyboardInterrupt right after
# its k-th checkpoint, as a Ctrl-C at that moment would (deterministic, unlike racing a signal).
INTERRUPT_ENV = "AVFER_INTERRUPT_AFTER_EPOCHS"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries that use the legacy global RNG
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def to_device(x: Any, device: torch.device) -> Any:
    """Move a tensor, or a dict/list/tuple of tensors, to ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(to_device(v, device) for v in x)
    return x


def _forward(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    device: torch.device,
    *,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    step_scheduler: Any = None,
) -> float:
    """One pass over ``loader``; returns the mean training loss. ``step_scheduler`` (a per-step
    schedule, e.g. staircase decay) is stepped after every optimiser step."""
    model.train()
    total, count = 0.0, 0
    use_amp = scaler is not None and scaler.is_enabled()
    for inputs, targets in loader:
        inputs, targets = to_device(inputs, device), targets.to(device)
        with torch.autocast(device.type, enabled=use_amp):
            loss = criterion(_forward(model, inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        if use_amp:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if use_amp:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        total += float(loss.detach()) * len(targets)
        count += len(targets)
    return total / max(count, 1)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[N, C]`` and targets ``[N]`` of every batch of ``loader``, in order."""
    model.eval()
    logits, targets = [], []
    for inputs, y in loader:
        logits.append(_forward(model, to_device(inputs, device)).float().cpu())
        targets.append(y)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best weights (by validation score) and the history."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)


def _reseed(loader: DataLoader, seed: int, epoch: int) -> None:
    torch.manual_seed(seed * 1000 + epoch)
    for owner in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed(seed * 1000 + epoch)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    *,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    score: Callable[[np.ndarray, np.ndarray], float],
    epochs: int,
    device: torch.device,
    seed: int = 0,
    scheduler: Any = None,
    scheduler_interval: str = "epoch",
    before_epoch: Callable[[int], None] | None = None,
    patience: int | None = None,
    amp: bool = False,
    grad_clip: float | None = None,
    checkpoint: str | Path | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train for up to ``epochs`` with early stopping on ``score(val_logits, val_targets)``.

    With ``checkpoint``, resume from it when it exists and rewrite it after every epoch.
    ``stop_after`` ends the run after that many epochs of this call (to test resuming).
    ``scheduler`` is stepped per ``scheduler_interval``: ``epoch``, ``step`` (every optimiser
    step) or ``plateau`` (per epoch with the validation score, ``ReduceLROnPlateau``), see
    :func:`avfer.train.common.build_scheduler`. ``before_epoch(epoch)`` runs before each epoch
    (staged schedules: which layers train).
    """
    if scheduler_interval not in ("epoch", "step", "plateau"):
        raise ValueError(f"scheduler_interval {scheduler_interval!r} is not epoch, step or plateau")
    model.to(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda")
    state: dict[str, Any] = {"epoch": 0, "best_score": -np.inf, "best_epoch": -1, "since_best": 0}
    state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state["history"] = []
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("lr_scheduler"):
            scheduler.load_state_dict(saved["lr_scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = saved["state"]
        log.info("resumed from %s at epoch %d", ckpt, state["epoch"])
    ran = 0
    interrupt_after = int(os.environ.get(INTERRUPT_ENV, 0)) if ckpt else 0
    while state["epoch"] < epochs and not (patience and state["since_best"] >= patience):
        epoch = state["epoch"]
        _reseed(train_loader, seed, epoch)
        if before_epoch is not None:
            before_epoch(epoch)
        per_step = scheduler if scheduler_interval == "step" else None
        lr = float(optimizer.param_groups[0]["lr"])  # the LR the epoch starts with
        loss = train_one_epoch(
            model,
            criterion,
            optimizer,
            train_loader,
            device,
            scaler=scaler,
            grad_clip=grad_clip,
            step_scheduler=per_step,
        )
        logits, targets = predict(model, val_loader, device)
        val_score = float(score(logits, targets))
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        elif scheduler is not None and scheduler_interval == "plateau":
            scheduler.step(val_score)
        state["history"].append({"epoch": epoch, "loss": loss, "val_score": val_score, "lr": lr})
        log.info("epoch %d: train loss %.4f, val score %.4f", epoch, loss, val_score)
        if val_score > state["best_score"]:
            state.update(best_score=val_score, best_epoch=epoch, since_best=0)
            state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["since_best"] += 1
        state["epoch"] = epoch + 1
        if ckpt:
            with atomic_path(ckpt) as tmp:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "scaler": scaler.state_dict(),
                        "state": state,
                    },
                    tmp,
                )
        ran += 1
        if interrupt_after and ran >= interrupt_after and state["epoch"] < epochs:
            raise KeyboardInterrupt(f"{INTERRUPT_ENV}={interrupt_after}: interrupted after epoch {epoch}")
        if stop_after is not None and ran >= stop_after:
            break
    return FitResult(state["best_state"], state["best_epoch"], state["best_score"], state["history"])
