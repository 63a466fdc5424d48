"""The jobs of ``avfer serve``: uploads under a private temporary folder, predicted one at a
time by one worker thread (the model is not shared between two predictions), a bounded queue,
progress per job, and job folders deleted ``keep_minutes`` after they finished.

A job's files are what ``avfer predict`` writes for one input (:func:`avfer.predict.files.
predict_input`), named ``result.*`` in the job's folder; the summary names the input by the
client's file name (never a path of the server), so that its ``error`` line is the one
``avfer predict NAME`` prints for the same file.
"""

from __future__ import annotations

import contextlib
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avfer.errors import AvferError
from avfer.predict.files import OUTPUTS, VIDEO_SUFFIXES, predict_input
from avfer.predict.runner import IMAGE_SUFFIXES, Predictor, failed_summary, labelled
from avfer.predict.writers import write_summary

STEM = "result"  # the job's output names: result.json, result.frames.csv, result.annotated.mp4, ...
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class QueueFull(AvferError):
    """The queue of waiting jobs is full (answered with 503)."""


class ModelBusy(AvferError):
    """The model stayed busy with a job longer than a live frame may wait (503)."""


def display_name(filename: str | None) -> str:
    """The client's file name as the summary shows it: its last path component (``/`` or ``\\``),
    control characters removed, at most 120 characters; ``upload`` when nothing is left."""
    name = _UNSAFE.sub("", re.split(r"[/\\]", filename or "")[-1]).strip()
    return name[-120:] or "upload"


class Progress:
    """The tqdm-like bar :meth:`Predictor.video` updates: frames done of ``total``."""

    def __init__(self) -> None:
        self.done = self.total = 0

    def reset(self, total: int | None = None) -> None:
        self.done, self.total = 0, int(total or 0)

    def update(self, n: int = 1) -> None:
        self.done += n


@dataclass
class Job:
    """One upload and its prediction; ``state``: uploading, queued, running, done."""

    id: str
    dir: Path
    name: str
    input: Path
    state: str = "uploading"
    progress: Progress = field(default_factory=Progress)
    summary: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    result: Future[dict[str, Any]] = field(default_factory=Future)

    def files(self) -> dict[str, str]:
        """Output kind → file name of the files the job wrote (json, csv, annotated, timeline)."""
        if self.state != "done":
            return {}
        names = [("json", "json"), ("csv", "frames.csv"), ("timeline", "timeline.png")]
        names += [("annotated", f"annotated.{ext}") for ext in ("mp4", "jpg", "png")]
        return {k: f"{STEM}.{n}" for k, n in names if (self.dir / f"{STEM}.{n}").is_file()}


class Jobs:
    """The server's jobs on one :class:`Predictor` (see the module docstring).

    ``max_queue``: jobs that may wait (uploading or queued) besides the running one;
    ``keep_minutes``: how long a finished job's files stay; ``root``: where the private folder
    is made (default: the system's temporary folder); ``frame_wait``: seconds a live frame
    waits for the model."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_queue: int = 8,
        keep_minutes: float = 60.0,
        root: str | Path | None = None,
        frame_wait: float = 10.0,
    ) -> None:
        self.predictor, self.max_queue, self.keep_minutes = predictor, max(0, max_queue), keep_minutes
        self.frame_wait = frame_wait
        self.dir = Path(tempfile.mkdtemp(prefix="avfer-serve-", dir=root))  # mode 0700
        self.model_lock = threading.Lock()  # one prediction at a time: a job or a live frame
        self._lock = threading.Lock()  # guards _jobs and _waiting
        self._jobs: dict[str, Job] = {}
        self._waiting = 0
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="avfer-serve-worker", daemon=True)
        self._janitor = threading.Thread(target=self._sweep, name="avfer-serve-janitor", daemon=True)
        self._worker.start()
        self._janitor.start()

    # --- jobs -------------------------------------------------------------------------------

    def new(self) -> Job:
        """A job (a new folder) for an upload to come; raises :class:`QueueFull` when
        ``max_queue`` jobs already wait."""
        with self._lock:
            if self._waiting >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} jobs waiting); try again later")
            self._waiting += 1
            job_id = secrets.token_hex(8)
            folder = self.dir / job_id
            folder.mkdir()
            job = Job(job_id, folder, "upload", folder / "upload.part")
            self._jobs[job_id] = job
        return job

    def submit(self, job: Job, filename: str | None) -> None:
        """Queue a job whose upload (``job.input``) came as ``filename``: the upload is renamed
        ``input<suffix>`` (the suffix of a known video or image format, which tells how it is
        read, as for ``avfer predict``)."""
        job.name = display_name(filename)
        suffix = Path(job.name).suffix.lower()
        stored = job.dir / f"input{suffix if suffix in VIDEO_SUFFIXES | IMAGE_SUFFIXES else ''}"
        job.input = job.input.rename(stored)
        job.state = "queued"
        self._queue.put(job)

    def discard(self, job: Job) -> None:
        """Forget a job whose upload failed (its slot in the queue and its folder)."""
        with self._lock:
            if self._jobs.pop(job.id, None) is not None and job.state == "uploading":
                self._waiting -= 1
        shutil.rmtree(job.dir, ignore_errors=True)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """Jobs ahead of ``job`` in the queue (0 when it runs or is done)."""
        if job.state not in ("uploading", "queued"):
            return 0
        with self._lock:
            return sum(j.state == "queued" and j.created < job.created for j in self._jobs.values())

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._lock:
                self._waiting -= 1
            job.state = "running"
            try:
                with self.model_lock:
                    summary = self._run(job)
            except Exception as exc:  # a bug, not a bad input: the server keeps running
                kind = "image" if job.input.suffix in IMAGE_SUFFIXES else "video"
                msg = f"{job.name}: internal error ({type(exc).__name__}: {exc})".splitlines()[0]
                summary = failed_summary(job.name, kind, msg, self.predictor.bundle)
            job.summary, job.finished, job.state = summary, time.time(), "done"
            job.result.set_result(summary)

    def _run(self, job: Job) -> dict[str, Any]:
        outputs = [o for o in OUTPUTS if o != "json"]
        summary = predict_input(
            self.predictor, job.input, job.dir, STEM, outputs, job.progress, title=job.name
        )
        stored, shown = str(job.input), job.name
        for key in ("input", "error"):
            summary[key] = summary[key].replace(stored, shown)
        write_summary(job.dir / f"{STEM}.json", summary)
        job.input.unlink(missing_ok=True)  # the upload is not needed any more
        return summary

    # --- live frames --------------------------------------------------------------------------

    def frame(self, image: np.ndarray) -> dict[str, Any]:
        """One live frame (``uint8 [H, W, 3]`` RGB) through the model: its summary and per face
        the box and probabilities; raises :class:`ModelBusy` after ``frame_wait`` seconds."""
        if not self.model_lock.acquire(timeout=self.frame_wait):
            raise ModelBusy("the model is busy with a video job; live frames resume after it")
        try:
            pred, marks = self.predictor.image(image, "frame")
        finally:
            self.model_lock.release()
        faces = [
            {"face_id": m.track, "box": [float(v) for v in m.box], **labelled(np.asarray(m.probs))}
            for m in marks
        ]
        h, w = image.shape[:2]
        label, probs = pred.summary["label"], pred.summary["probabilities"]
        return {"width": w, "height": h, "label": label, "probabilities": probs, "faces": faces}

    # --- cleaning up --------------------------------------------------------------------------

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete the jobs that finished more than ``keep_minutes`` ago; their ids."""
        now = time.time() if now is None else now
        with self._lock:
            old = [
                j
                for j in self._jobs.values()
                if j.finished is not None and now - j.finished > self.keep_minutes * 60
            ]
            for j in old:
                del self._jobs[j.id]
        for j in old:
            shutil.rmtree(j.dir, ignore_errors=True)
        return [j.id for j in old]

    def _sweep(self) -> None:
        every = min(60.0, max(1.0, self.keep_minutes * 15))  # a quarter of the keep time, at most 1 min
        while not self._stop.wait(every):
            self.cleanup()

    def close(self, wait: float = 5.0) -> None:
        """Stop the threads (waiting up to ``wait`` seconds for a running job) and delete the
        private folder."""
        self._stop.set()
        self._queue.put(None)
        self._worker.join(timeout=wait)
        self._janitor.join(timeout=5)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)
