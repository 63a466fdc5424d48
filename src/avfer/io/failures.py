"""The failure budget of a split: a few bad clips are data, most clips of a split failing is a
broken run (wrong files, a missing codec)."""

from __future__ import annotations

from collections.abc import Mapping

from avfer.errors import AvferError

DEFAULT_MAX_FAILED = 0.5
"""Default of ``faces.max_failed_fraction`` and ``audio.max_failed_fraction``."""
SHOWN = 3
"""Failures named in the error."""


class FailedSplitError(AvferError, RuntimeError):
    """More than the allowed fraction of a split's clips failed: the run stops there."""


def check_failures(
    failures: Mapping[str, str],
    n_clips: int,
    max_fraction: float,
    what: str,
    section: str,
) -> None:
    """Raise :class:`FailedSplitError` when ``failures`` (clip id → one-line error, in order) are
    more than ``max_fraction`` of the ``n_clips`` clips of ``what`` (a split's caches; ``1.0``
    never raises). The one-line message names the ``section.max_failed_fraction`` setting and the
    first failures."""
    if len(failures) <= max_fraction * n_clips:
        return
    first = "; ".join(f"{cid}: {err}" for cid, err in list(failures.items())[:SHOWN])
    more = f"; and {len(failures) - SHOWN} more" if len(failures) > SHOWN else ""
    raise FailedSplitError(
        f"{what}: {len(failures)} of {n_clips} clips failed, more than "
        f"{section}.max_failed_fraction = {max_fraction:g}; first: {first}{more}"
    )
