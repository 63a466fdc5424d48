"""``avfer serve``'s HTTP API against a real uvicorn on a free loopback port: the same JSON and
files as ``avfer predict``, every error answered as one-line JSON (not media, truncated,
empty, no face, too large, no file, malformed, unknown job or file, full queue) while the server
keeps running, progress and clean-up of jobs, live frames, 8 concurrent clients."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_server import running_server

from avfer.bundle import load_bundle, save_bundle, shipped_bundle
from avfer.cli import build_parser, main
from avfer.labels import EMOTIONS
from avfer.predict import Predictor
from avfer.predict.runner import read_image
from avfer.video import probe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle_dir(fer_keras_model, tmp_path_factory) -> Path:
    """A bundle folder given to both the server and ``avfer predict --model`` (never the default)."""
    return save_bundle(shipped_bundle(fer_keras_model), tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def predictor(bundle_dir) -> Predictor:
    return Predictor(load_bundle(bundle_dir), device="cpu")


@pytest.fixture(scope="module")
def server(predictor):
    with running_server(predictor) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def media(pyfeat_media, tmp_path_factory) -> Path:
    """Inputs made once: a 1.2 s face clip (small, with audio), a truncated copy of it, an empty
    file, random bytes, a photo without a face, a smiling face photo."""
    out = tmp_path_factory.mktemp("media")
    cmd = ["ffmpeg", "-v", "error", "-y", "-ss", "13", "-t", "1.2"]
    cmd += ["-i", str(pyfeat_media / "WolfgangLanger_Pexels.mp4"), "-vf", "scale=320:-2"]
    subprocess.run([*cmd, str(out / "talk.mp4")], check=True)
    data = (out / "talk.mp4").read_bytes()
    (out / "cut.mp4").write_bytes(data[: len(data) // 2])
    (out / "empty.mp4").write_bytes(b"")
    (out / "noise.mov").write_bytes(np.random.default_rng(0).bytes(5000))
    shutil.copy(pyfeat_media / "free-mountain-vector-01.jpg", out / "mountain.jpg")
    shutil.copy(pyfeat_media / "0-f15-hao-ph.jpg", out / "smile.jpg")
    return out


def _post(client: httpx.Client, path: Path, name: str | None = None, **params) -> httpx.Response:
    with path.open("rb") as f:
        return client.post("/api/predict", params=params, files={"file": (name or path.name, f)})


BAD = ["cut.mp4", "empty.mp4", "noise.mov", "mountain.jpg"]


@pytest.fixture(scope="module")
def cli(media, bundle_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """``avfer predict`` once on every input (names relative to their folder, as a person types
    them) with the server's bundle: its output folder and error lines."""
    out, err, cwd = tmp_path_factory.mktemp("cli"), io.StringIO(), os.getcwd()
    os.chdir(media)
    try:
        with contextlib.redirect_stderr(err):
            main(["predict", "talk.mp4", "smile.jpg", *BAD, "--model", str(bundle_dir), "--out", str(out)])
    finally:
        os.chdir(cwd)
    return out, err.getvalue().strip().splitlines()


def test_api_equals_cli_for_a_video_and_an_image(client, media, cli):
    """The API's JSON is the JSON ``avfer predict`` writes for the same file and model, its
    per-frame CSV the CLI's; the annotated video keeps the clip's length and audio (and plays
    in parts, as a <video> asks for it), the timeline is a PNG."""
    out, _ = cli
    for name, annotated in (("talk.mp4", "result.annotated.mp4"), ("smile.jpg", "result.annotated.jpg")):
        r = _post(client, media / name)
        assert r.status_code == 200, r.text
        got = r.json()
        links, job = got.pop("links"), got.pop("job")
        stem = Path(name).stem
        assert got == json.loads((out / f"{stem}.json").read_text())
        assert got["status"] == "ok" and got["label"] in EMOTIONS and got["input"] == name
        assert links["annotated"] == f"/api/jobs/{job}/files/{annotated}"
        csv = client.get(links["csv"])
        assert csv.status_code == 200 and csv.content == (out / f"{stem}.frames.csv").read_bytes()
        assert client.get(links["json"]).json() == got
        ann = client.get(links["annotated"])
        assert ann.status_code == 200 and f"{stem}.annotated" in ann.headers["content-disposition"]
        if name.endswith(".mp4"):
            assert ann.headers["content-type"] == "video/mp4"
            (out / "api.mp4").write_bytes(ann.content)
            info, source = probe(out / "api.mp4"), probe(media / name)
            assert info.has_audio and abs(info.duration - source.duration) < 0.1
            part = client.get(links["annotated"], headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and len(part.content) == 100
            assert client.get(links["timeline"]).headers["content-type"] == "image/png"
        else:
            assert "timeline" not in links  # as the CLI: no timeline for an image


@pytest.mark.parametrize("name", BAD)
def test_bad_inputs_get_the_cli_message_and_a_4xx(client, media, cli, name):
    """Truncated, empty, not media, no face: 422 with the summary the CLI writes, whose error is
    the CLI's one line for the same file; the server answers the next request."""
    out, err = cli
    r = _post(client, media / name)
    assert r.status_code == 422
    body = r.json()
    assert f"avfer: error: {body['error']}" in err
    assert body["status"] in ("failed", "no_face") and name in body["error"] and "\n" not in body["error"]
    body.pop("links"), body.pop("job")
    assert body == json.loads((out / f"{Path(name).stem}.json").read_text())
    assert client.get("/api/health").json()["status"] == "ok"


def test_request_errors_are_json_with_one_line(client, media, predictor):
    no_file = client.post("/api/predict", data={"other": "x"}, files={"x": ("a.mp4", b"123")})
    assert no_file.status_code == 400 and "multipart field 'file'" in no_file.json()["error"]
    not_multipart = client.post("/api/predict", content=b"raw", headers={"content-type": "video/mp4"})
    assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.json()["error"]
    bad = client.post(
        "/api/predict",
        content=b"this is not multipart at all\r\n",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert bad.status_code == 400 and "malformed" in bad.json()["error"]
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    job = _post(client, media / "smile.jpg").json()["job"]
    for name in ("result.timeline.png", "input.jpg", "..%2Finput.jpg", "result.frames.csv%00"):
        r = client.get(f"/api/jobs/{job}/files/{name}")
        assert r.status_code == 404 and "error" in r.json()
    assert client.post("/api/predict", params={"wait": "maybe"}).json()["error"].startswith("query.wait")
    assert client.get("/api/health").status_code == 200


def test_upload_limit_413(predictor, media):
    with running_server(predictor, max_upload_mb=0.01) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        big = _post(c, media / "smile.jpg")  # 25 kB > 10.24 kB: the streamed part is cut
        assert big.status_code == 413 and "limit of 0.01 MB" in big.json()["error"]
        declared = c.post(
            "/api/predict",
            content=b"x" * (2 << 20),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )  # a declared length over the limit: refused before the body is read
        assert declared.status_code == 413
        small = c.post("/api/predict", files={"file": ("tiny.jpg", b"\xff\xd8 not a jpeg")})
        assert small.status_code == 422 and small.json()["error"].startswith("tiny.jpg: unreadable image")
        assert len(list(s.jobs.dir.iterdir())) == 1  # the refused uploads left nothing


def test_private_folder_generated_names_and_cleanup(predictor, media):
    with running_server(predictor, keep_minutes=1) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        assert s.jobs.dir.stat().st_mode & 0o077 == 0  # private to the server's user
        r = _post(c, media / "smile.jpg", name="../../x/évil name.JPG", wait="false")
        assert r.status_code == 202
        job = r.json()["id"]
        while (j := c.get(f"/api/jobs/{job}").json())["state"] != "done":
            time.sleep(0.05)
        assert j["name"] == "évil name.JPG" and j["result"]["input"] == "évil name.JPG"
        assert j["result"]["label"] == "Happy"
        files = sorted(p.relative_to(s.jobs.dir).as_posix() for p in s.jobs.dir.rglob("*"))
        assert files == [job] + [f"{job}/result.{n}" for n in ("annotated.jpg", "frames.csv", "json")]
        assert s.jobs.cleanup(time.time() + 30) == []  # kept for a minute
        assert s.jobs.cleanup(time.time() + 61) == [job]
        assert c.get(f"/api/jobs/{job}").status_code == 404 and list(s.jobs.dir.iterdir()) == []
    assert not s.jobs.dir.exists()  # the private folder goes with the server


def test_progress_of_a_video_job(client, media):
    r = _post(client, media / "talk.mp4", wait="false")
    assert r.status_code == 202 and r.json()["state"] in ("queued", "running")
    seen = []
    while (j := client.get(r.json()["links"]["job"]).json())["state"] != "done":
        seen.append(j["progress"])
        time.sleep(0.05)
    n = j["result"]["frames"]
    assert j["progress"] == {"done": n, "total": n} and n == 30
    assert all(p["done"] <= p["total"] for p in seen if p["total"])


def test_queue_full_503_then_all_answered(predictor, media):
    with (
        running_server(predictor, max_queue=1, frame_wait=0.5) as s,
        httpx.Client(base_url=s.url, timeout=60) as c,
    ):
        with s.jobs.model_lock:  # a long job: the model stays busy
            first = _post(c, media / "smile.jpg", wait="false").json()
            while c.get(first["links"]["job"]).json()["state"] != "running":
                time.sleep(0.01)
            second = _post(c, media / "mountain.jpg", wait="false")
            assert second.status_code == 202 and second.json()["position"] == 0
            third = _post(c, media / "smile.jpg")
            assert third.status_code == 503 and "queue is full" in third.json()["error"]
            busy = c.post("/api/frame", content=(media / "smile.jpg").read_bytes())
            assert busy.status_code == 503 and "model is busy" in busy.json()["error"]
        for job in (first["id"], second.json()["id"]):
            while (j := c.get(f"/api/jobs/{job}").json())["state"] != "done":
                time.sleep(0.05)
            assert j["result"]["status"] in ("ok", "no_face")
        assert c.post("/api/frame", content=(media / "smile.jpg").read_bytes()).status_code == 200


def test_eight_concurrent_clients_nothing_lost_or_mixed(server, predictor, media, pyfeat_media):
    """8 clients at once, 8 different inputs: every answer is its own input's prediction."""
    names = ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"]
    names += ["multi_face.jpg", "single_face.jpg", "free-mountain-vector-01.jpg", "BWPictureHuman.jpg"]
    with server.jobs.model_lock:  # the server's model, not used by it meanwhile
        expected = {n: predictor.image(read_image(pyfeat_media / n), n)[0].summary for n in names}
    answers: dict[str, httpx.Response] = {}
    start = threading.Barrier(len(names))

    def one(name: str) -> None:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            start.wait()
            answers[name] = _post(c, pyfeat_media / name)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == sorted(names)
    jobs = set()
    for n, r in answers.items():
        got = r.json()
        jobs.add(got.pop("job")), got.pop("links")
        assert r.status_code == (200 if expected[n]["status"] == "ok" else 422)
        assert got == json.loads(json.dumps(expected[n])), n  # its own file's summary
    assert len(jobs) == 8
    labels = {n: answers[n].json()["label"] for n in names}
    assert labels["0-f1-su-ph.jpg"] == "Surprise" and labels["0-f15-hao-ph.jpg"] == "Happy"


def test_live_frame(client, media):
    jpeg = {"content-type": "image/jpeg"}
    r = client.post("/api/frame", content=(media / "smile.jpg").read_bytes(), headers=jpeg)
    assert r.status_code == 200
    got = r.json()
    assert got["label"] == "Happy" and len(got["faces"]) == 1 and got["faces"][0]["label"] == "Happy"
    x1, y1, x2, y2 = got["faces"][0]["box"]
    assert 0 <= x1 < x2 <= got["width"] and 0 <= y1 < y2 <= got["height"]
    assert abs(sum(got["faces"][0]["probabilities"].values()) - 1) < 1e-5
    none = client.post("/api/frame", content=(media / "mountain.jpg").read_bytes())
    assert none.status_code == 200 and none.json()["label"] is None and none.json()["faces"] == []
    bad = client.post("/api/frame", content=b"not an image")
    assert bad.status_code == 400 and bad.json()["error"].startswith("frame: unreadable image")


def test_health_docs_and_page(client, predictor):
    h = client.get("/api/health").json()
    assert h["model"] == predictor.bundle.name and h["labels"] == list(EMOTIONS)
    assert {"avfer", "torch", "fastapi"} <= set(h["versions"])
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "/static/app.js" in page.text
    assert "getUserMedia" in client.get("/static/app.js").text


def test_cli_serve_defaults_are_safe():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.max_upload_mb, args.model) == ("127.0.0.1", 8000, 500.0, None)
    assert args.keep_minutes > 0 and args.max_queue > 0
