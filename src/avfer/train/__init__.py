"""Training: a readable loop shared by every model (train_one_epoch / predict / fit)."""

from avfer.train.loop import (
    FitResult,
    fit,
    predict,
    resolve_device,
    seed_everything,
    to_device,
    train_one_epoch,
)

__all__ = [
    "FitResult",
    "fit",
    "predict",
    "resolve_device",
    "seed_everything",
    "to_device",
    "train_one_epoch",
]
