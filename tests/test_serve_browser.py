"""``avfer serve``'s page as a person uses it, in Debian's Chromium (headless, driven by
Playwright's Python package with ``executable_path``: no browser download): drop a real face
video, watch the progress bar, get the label, a playing annotated video, the timeline, the
track table and the downloads; the webcam view on Chromium's fake camera (a y4m of the same
face) shows a label over the stream. Screenshots go to the test's folder, and also to
``$AVFER_SCREENSHOTS`` when set (``docs/images`` makes the README's picture)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from serve_server import running_server

from avfer.bundle import load_bundle, save_bundle, shipped_bundle
from avfer.labels import EMOTIONS
from avfer.predict import Predictor

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

# as the environment notes advise: no background connections on a machine without a network
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def chromium() -> str:
    """Debian's chromium; skipped without it, except under CI=true where it must be there."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (make install's system-deps install it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-ss", "13", "-t", "2", "-i", str(src), *args, str(dst)], check=True
    )
    return dst


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("AVFER_SCREENSHOTS"):
        out = Path(os.environ["AVFER_SCREENSHOTS"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / name)
    return path


@pytest.fixture(scope="module")
def server(fer_keras_model, tmp_path_factory):
    bundle = save_bundle(shipped_bundle(fer_keras_model), tmp_path_factory.mktemp("bundle"))
    with running_server(Predictor(load_bundle(bundle), device="cpu")) as s:
        yield s


@pytest.fixture(scope="module")
def playwright():
    chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def test_drop_a_video_shows_label_and_plays_the_annotated_video(playwright, server, pyfeat_media, tmp_path):
    clip = _ffmpeg(pyfeat_media / "WolfgangLanger_Pexels.mp4", tmp_path / "wolfgang.mp4")
    browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(server.url)
        page.wait_for_function("() => document.getElementById('model').textContent.startsWith('model: ')")
        page.evaluate(
            """() => { window.seen = [];
            const text = document.getElementById('progress-text');
            new MutationObserver(() => window.seen.push(text.textContent)).observe(
              document.getElementById('progress'), {subtree: true, childList: true, characterData: true});
            }"""
        )
        # a real drop: the file's bytes in a DataTransfer, dragged over and dropped on the zone
        page.evaluate(
            """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "video/mp4"}));
            const zone = document.getElementById("drop");
            for (const type of ["dragenter", "dragover", "drop"])
              zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
            }""",
            [base64.b64encode(clip.read_bytes()).decode(), clip.name],
        )
        page.wait_for_selector("#result", state="visible", timeout=300_000)
        assert page.text_content("#label") in EMOTIONS
        assert page.text_content("#result-name") == clip.name and page.is_hidden("#error")
        seen = page.evaluate("window.seen")
        assert any(s.startswith(("uploading", "queued", "predicting")) for s in seen), seen
        page.wait_for_function(
            """() => { const v = document.getElementById('video');
            return !v.hidden && !v.paused && v.readyState >= 2 && v.currentTime > 0.3
              && v.videoWidth > 0; }""",
            timeout=30_000,
        )
        page.wait_for_function("() => document.getElementById('timeline').naturalWidth >= 800")
        assert page.locator("#tracks tbody tr").count() >= 1
        assert page.locator("#tracks tbody tr").first.locator("td").nth(4).text_content() in EMOTIONS
        hrefs = page.eval_on_selector_all("#downloads a", "as => as.map((a) => a.getAttribute('href'))")
        assert sorted(h.rsplit("/", 1)[1] for h in hrefs) == sorted(
            ["result.json", "result.frames.csv", "result.annotated.mp4", "result.timeline.png"]
        )
        page.evaluate("document.getElementById('video').pause()")
        shot = _screenshot(page, tmp_path, "serve_result.png")
        assert shot.stat().st_size > 50_000
    finally:
        browser.close()


def test_a_file_that_is_no_video_shows_the_error(playwright, server, tmp_path):
    browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        page.goto(server.url)
        (tmp_path / "notes.mp4").write_bytes(b"not a video at all" * 50)
        page.set_input_files("#file", str(tmp_path / "notes.mp4"))  # the picker, instead of a drop
        page.wait_for_selector("#error", state="visible", timeout=120_000)
        assert page.text_content("#error").startswith("notes.mp4: unreadable video")
    finally:
        browser.close()


def test_webcam_view_shows_a_label_over_the_fake_camera(playwright, server, pyfeat_media, tmp_path):
    y4m = _ffmpeg(
        pyfeat_media / "WolfgangLanger_Pexels.mp4",
        tmp_path / "camera.y4m",
        "-vf",
        "fps=10",
        "-pix_fmt",
        "yuv420p",
    )
    args = [*CHROMIUM_ARGS, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={y4m}"]
    browser = playwright.chromium.launch(executable_path=chromium(), args=args)
    try:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(server.url)
        page.click("#tab-cam")
        page.click("#cam-start")
        page.wait_for_function(
            """(labels) => { const l = document.getElementById('live-label');
            return !l.hidden && labels.includes(l.textContent); }""",
            arg=list(EMOTIONS),
            timeout=120_000,
        )
        label, video = page.locator("#live-label").bounding_box(), page.locator("#cam").bounding_box()
        assert video["width"] >= 320 and video["height"] >= 180
        assert video["x"] <= label["x"] and label["x"] + label["width"] <= video["x"] + video["width"]
        assert video["y"] <= label["y"] and label["y"] + label["height"] <= video["y"] + video["height"]
        drawn = page.evaluate(
            """() => { const c = document.getElementById('overlay');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"""
        )
        assert drawn > 500  # the face box and bars over the stream
        assert "frames/s predicted" in page.text_content("#cam-status")
        _screenshot(page, tmp_path, "serve_webcam.png")
        page.click("#cam-stop")
    finally:
        browser.close()
