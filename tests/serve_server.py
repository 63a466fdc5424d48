"""``avfer serve`` for tests: the real app under uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from avfer.predict import Predictor
from avfer.serve.app import create_app
from avfer.serve.jobs import Jobs


@dataclass
class Running:
    url: str
    jobs: Jobs


@contextlib.contextmanager
def running_server(
    predictor: Predictor, *, max_upload_mb: float = 500.0, **jobs_kw: object
) -> Iterator[Running]:
    """Serve ``predictor`` on ``127.0.0.1:<free port>`` until the block ends."""
    import uvicorn

    jobs = Jobs(predictor, **jobs_kw)  # type: ignore[arg-type]
    app = create_app(jobs, max_upload_mb=max_upload_mb)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}", jobs)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        jobs.close()
