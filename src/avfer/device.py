"""The one torch device resolver of every stage (face detection, training, inference)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from avfer.errors import AvferError

log = logging.getLogger(__name__)


def resolve_device(
    name: str | torch.device | None = "auto", *, key: str = "device", gpus: int | None = None
) -> torch.device:
    """``auto`` (or ``None`` / ``''``) → CUDA when available, else CPU; anything else as given.

    ``gpus``: the GPUs the job was given (the rule's ``gpu`` resource; ``None`` outside a rule).
    With ``auto``, a job given no GPU runs on the CPU (a GPU the scheduler did not hand it
    belongs to another job), and a job given GPUs on a machine without CUDA falls back to the
    CPU with a warning. A CUDA device that this machine does not have is one
    :class:`AvferError` naming the config ``key`` it came from (e.g. ``faces.device``).
    """
    if isinstance(name, torch.device):
        device = name
    elif name in (None, "", "auto"):
        if gpus == 0:
            return torch.device("cpu")
        if gpus and not torch.cuda.is_available():
            log.warning("%s: the job was given %d GPU(s) but CUDA is not available: using the CPU", key, gpus)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(str(name))
        except RuntimeError as exc:
            raise AvferError(f"{key} is {name!r}: not a torch device ({exc})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AvferError(f"{key} is {str(name)!r} but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise AvferError(
                f"{key} is {str(name)!r} but this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return device


def job_device(smk: Any, name: str, key: str) -> str:
    """The torch device of a rule's job: the config value ``name`` (of config key ``key``)
    resolved with the GPUs the job was given (its ``gpu`` resource, see :func:`resolve_device`)."""
    gpus = int(getattr(smk.resources, "gpu", 0) or 0)
    device = str(resolve_device(name, key=key, gpus=gpus))
    log.info("%s: %s -> %s (job resources: %d GPU(s))", key, name, device, gpus)
    return device
