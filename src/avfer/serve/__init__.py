"""``avfer serve``: a local web app and HTTP API on one model bundle (FastAPI + uvicorn).

:mod:`avfer.serve.jobs` queues and runs the predictions (the code of ``avfer predict``),
:mod:`avfer.serve.upload` streams uploads to disk with a size limit, :mod:`avfer.serve.app`
holds the routes, ``static/`` the page (plain HTML, CSS and JavaScript, no build step).
"""

from __future__ import annotations

from pathlib import Path

from avfer.predict.runner import Predictor


def serve(
    predictor: Predictor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = 500.0,
    keep_minutes: float = 60.0,
    max_queue: int = 8,
    root: str | Path | None = None,
) -> None:
    """Serve ``predictor`` until interrupted; the private job folder is deleted at the end."""
    import uvicorn

    from avfer.serve.app import create_app
    from avfer.serve.jobs import Jobs

    jobs = Jobs(predictor, max_queue=max_queue, keep_minutes=keep_minutes, root=root)
    try:
        app = create_app(jobs, max_upload_mb=max_upload_mb)
        print(f"avfer serve: {predictor.bundle.name} on http://{host}:{port}/ (API docs: /docs)", flush=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        jobs.close()
