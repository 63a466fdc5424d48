"""The failure budget of a shard: a few bad clips are data, most clips failing is a broken job."""

from __future__ import annotations

import os
from collections.abc import Mapping

from avfer.errors import AvferError

DEFAULT_MAX_FAILED = 0.5
"""Default of ``faces.max_failed_fraction`` and ``audio.max_failed_fraction``."""
SHOWN = 3
"""Failures named in the error."""


class FailedShardError(AvferError, RuntimeError):
    """More than the allowed fraction of a shard's clips failed; the shard's cache is not written."""


def check_failures(
    failures: Mapping[str, str],
    n_clips: int,
    max_fraction: float,
    out_path: str | os.PathLike[str],
    section: str,
) -> None:
    """Raise :class:`FailedShardError` once ``failures`` (clip id → one-line error, in order)
    exceed ``max_fraction`` of the shard's ``n_clips`` (``1.0`` never raises).

    Called after each failed clip, it stops the job as soon as the outcome is certain. The
    message names the ``section.max_failed_fraction`` setting and the first failures.
    """
    if len(failures) <= max_fraction * n_clips:
        return
    first = "; ".join(f"{cid}: {err}" for cid, err in list(failures.items())[:SHOWN])
    more = f"; and {len(failures) - SHOWN} more" if len(failures) > SHOWN else ""
    raise FailedShardError(
        f"{out_path}: {len(failures)} of {n_clips} clips failed, more than "
        f"{section}.max_failed_fraction = {max_fraction:g} (not written); first: {first}{more}"
    )
