"""The HTTP API and page of ``avfer serve`` (FastAPI): ``POST /api/predict``, ``GET /api/jobs/{id}``
and its files, ``POST /api/frame`` (the webcam view), ``GET /api/health``, ``/docs`` and ``/``.

Every error is answered as JSON with a one-line ``error`` (and a 4xx or 503 status); a failed
prediction's body is the summary ``avfer predict`` writes for it (``status`` failed / no_face).
"""

from __future__ import annotations

import asyncio
import io
import json
from importlib import metadata, resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from avfer.bundle import versions
from avfer.errors import AvferError
from avfer.labels import EMOTIONS
from avfer.serve.jobs import STEM, Job, Jobs, ModelBusy, QueueFull
from avfer.serve.upload import UploadError, check_length, receive_file

STATIC = resources.files("avfer.serve") / "static"
MAX_FRAME_BYTES = 8 << 20
UPLOAD_BODY = {  # the multipart body, for /docs (the handler streams it itself)
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def as_json(obj: Any, status: int = 200) -> Response:
    """``obj`` as ``avfer predict`` writes it (:func:`json.dumps`, keys in order)."""
    return Response(json.dumps(obj), status_code=status, media_type="application/json")


def error(status: int, message: str, **extra: Any) -> Response:
    return as_json({"error": message, **extra}, status)


def links(job: Job) -> dict[str, str]:
    base = f"/api/jobs/{job.id}"
    return {"job": base} | {kind: f"{base}/files/{name}" for kind, name in job.files().items()}


def job_json(jobs: Jobs, job: Job) -> dict[str, Any]:
    p = job.progress
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "position": jobs.position(job),
        "progress": {"done": p.done, "total": p.total},
        "result": job.summary,
        "links": links(job),
    }


def _status(summary: dict[str, Any]) -> int:
    return 200 if summary.get("status") == "ok" else 422


def create_app(jobs: Jobs, *, max_upload_mb: float = 500.0) -> FastAPI:
    """The app serving ``jobs`` (its predictor's model); uploads of at most ``max_upload_mb``."""
    bundle = jobs.predictor.bundle
    limit = int(max_upload_mb * 2**20)
    app = FastAPI(
        title="avfer",
        version=versions()["avfer"],
        summary="Emotions of videos, images and webcam frames (the model of `avfer predict`)",
    )
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"))

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """The model (name, labels, face model, sequence models, fusion), versions and the queue."""
        return {
            "status": "ok",
            "model": bundle.name,
            "labels": list(EMOTIONS),
            "face_model": bundle.face_name,
            "models": list(bundle.models),
            "fusion": (bundle.fusion or {}).get("method"),
            "versions": versions() | {"fastapi": metadata.version("fastapi")},
            "max_upload_mb": max_upload_mb,
            "max_queue": jobs.max_queue,
        }

    @app.post("/api/predict", openapi_extra=UPLOAD_BODY, status_code=200)
    async def predict(request: Request, wait: bool = True) -> Response:
        """Predict an uploaded video or image (multipart field ``file``). ``wait`` (default):
        answer with the clip summary ``avfer predict`` writes, plus ``job`` and ``links`` (the
        per-frame CSV, annotated video or image, timeline, JSON); 422 with the summary when it
        failed or found no face. ``wait=false``: answer 202 at once with the job (poll
        ``links.job``). 413: over the upload limit; 503: the queue is full."""
        try:
            check_length(request, limit)
            job = jobs.new()
        except (UploadError, QueueFull) as exc:
            return error(getattr(exc, "status", 503), str(exc))
        try:
            filename = await receive_file(request, job.input, limit)
        except UploadError as exc:
            jobs.discard(job)
            return error(exc.status, str(exc))
        except BaseException:
            jobs.discard(job)
            raise
        jobs.submit(job, filename)
        if not wait:
            return as_json(job_json(jobs, job), 202)
        summary = await asyncio.wrap_future(job.result)
        return as_json({**summary, "job": job.id, "links": links(job)}, _status(summary))

    @app.get("/api/jobs/{job_id}")
    async def get_job(job_id: str) -> Response:
        """A job's state (uploading, queued, running, done), queue position, progress (frames
        done / total of a video), its summary once done and the links to its files."""
        job = jobs.get(job_id)
        if job is None:
            return error(404, f"no job {job_id} (unknown, or deleted after its keep time)")
        return as_json(job_json(jobs, job))

    @app.get("/api/jobs/{job_id}/files/{name}")
    async def get_file(job_id: str, name: str) -> Response:
        """One output of a finished job (``result.json``, ``result.frames.csv``,
        ``result.annotated.mp4`` / ``.jpg`` / ``.png``, ``result.timeline.png``)."""
        job = jobs.get(job_id)
        if job is None:
            return error(404, f"no job {job_id} (unknown, or deleted after its keep time)")
        if name not in job.files().values():
            return error(404, f"job {job_id} has no file {name}")
        stem = job.name.rsplit(".", 1)[0] if "." in job.name else job.name
        download = stem + name.removeprefix(STEM)  # e.g. clip.annotated.mp4
        return FileResponse(job.dir / name, filename=download, content_disposition_type="inline")

    @app.post(
        "/api/frame",
        openapi_extra={
            "requestBody": {"required": True, "content": {"image/jpeg": {"schema": {"type": "string"}}}}
        },
    )
    async def frame(request: Request) -> Response:
        """One webcam frame (an image as the body, e.g. ``image/jpeg``): the label and
        probabilities of its largest face and every face's box, label and probabilities."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FRAME_BYTES:
                return error(413, f"a frame is limited to {MAX_FRAME_BYTES >> 20} MB")
        try:
            image = _decode(bytes(body))
            return as_json(await run_in_threadpool(jobs.frame, image))
        except ModelBusy as exc:
            return error(503, str(exc))
        except AvferError as exc:
            return error(400, str(exc))

    return app


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise AvferError(f"frame: unreadable image ({exc})") from None
