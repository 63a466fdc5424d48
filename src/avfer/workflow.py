"""Glue for the thin Snakemake scripts: log to the rule's log file, report errors in one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from avfer.errors import AvferError

log = logging.getLogger("avfer")


@contextmanager
def logged(log_path: str, rule: str) -> Iterator[logging.Logger]:
    """Send stderr and the ``avfer`` logger to ``log_path`` (line-buffered) for one script.

    An :class:`~avfer.errors.AvferError` (bad input or config) ends the job with a single
    ``ERROR`` line naming the culprit instead of a traceback; anything else keeps its traceback.
    """
    fh = open(log_path, "w", buffering=1)  # noqa: SIM115 - closed below
    old_stderr = sys.stderr
    sys.stderr = fh
    handler = logging.StreamHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        log.info("rule %s started", rule)
        yield log
        log.info("rule %s finished", rule)
    except AvferError as exc:
        line = f"ERROR in rule {rule}: {exc}"
        fh.write(line + "\n")
        print(line, file=old_stderr)
        raise SystemExit(1) from None
    finally:
        root.removeHandler(handler)
        sys.stderr = old_stderr
        fh.close()
