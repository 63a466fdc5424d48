"""The demo dataset generator: layout, formats, determinism, detectable faces, prosody."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avfer.demo import CLASS_DESIGN, FACE_GROUPS, FER2013_ORDER, TRUTH_COLUMNS, make_demo, plan_clips
from avfer.demo import writer as demo_writer
from avfer.demo.faces import render_clip
from avfer.demo.voice import SR, synth_voice
from avfer.labels import EMOTIONS

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

SIZE = 128
CONFIG = dict(
    seed=3,
    clips_per_class=1,
    min_seconds=1.0,
    max_seconds=2.0,
    frame_size=SIZE,
    fer_per_class=10,
    no_audio_clips=2,
    face_exit_clips=1,
)
SMALL = dict(clips_per_class=1, min_seconds=0.4, max_seconds=0.8, frame_size=64, fer_per_class=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[dict]]:
    root = tmp_path_factory.mktemp("demo")
    summary = make_demo(root, **CONFIG)
    with open(root / "demo_truth.csv", newline="") as f:
        truth = list(csv.DictReader(f))
    return root, summary, truth


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    return json.loads(out)


def _frames(path: Path, size: int = SIZE) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def _audio(path: Path) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.int16).astype(np.float64) / 32768


def _pitch_and_level(x: np.ndarray, win: int = 640) -> tuple[float, float]:
    """Median autocorrelation F0 (Hz) over voiced 40 ms frames, and overall RMS (dBFS)."""
    f0s = []
    for i in range(0, len(x) - win, win // 2):
        fr = x[i : i + win] - x[i : i + win].mean()
        spec = np.abs(np.fft.rfft(fr, 2 * win)) ** 2
        ac = np.fft.irfft(spec)[:win]
        lo, hi = SR // 450, SR // 70
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[0] > 0 and ac[k] / ac[0] > 0.5:
            f0s.append(SR / k)
    level = 20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12)
    return (float(np.median(f0s)) if f0s else 0.0), level


def test_tree_layout_and_truth(demo):
    root, summary, truth = demo
    for split in ("Train_AFEW", "Val_AFEW"):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(EMOTIONS)
        for emotion in EMOTIONS:
            assert len(list((root / split / emotion).glob("*.avi"))) == CONFIG["clips_per_class"]
    test_files = list((root / "Test_AFEW").iterdir())
    assert all(p.is_file() and p.suffix == ".avi" for p in test_files)
    assert len(test_files) == 7 * CONFIG["clips_per_class"]

    assert list(truth[0]) == list(TRUTH_COLUMNS)
    assert len(truth) == 21 * CONFIG["clips_per_class"]
    ids = [r["clip_id"] for r in truth]
    assert len(set(ids)) == len(ids) and all(i.isdigit() and len(i) == 6 for i in ids)
    for r in truth:
        assert (root / r["path"]).is_file() and Path(r["path"]).stem == r["clip_id"]
        assert (r["face_group"], r["voice_group"]) == CLASS_DESIGN[r["label"]]
        assert r["split"] in ("train", "val", "test")
    assert {r["split"] for r in truth if r["has_audio"] == "False"} == {"train", "val"}
    exits = [r for r in truth if r["face_exit"] == "True"]
    assert len(exits) == 1 and exits[0]["split"] in ("train", "val")
    assert summary["clips"] == {"train": 7, "val": 7, "test": 7}
    assert len(summary["no_audio"]) == 2 and summary["face_exit"] == [exits[0]["clip_id"]]


def test_fer2013_csv(demo):
    root, summary, _ = demo
    lines = (root / "fer2013.csv").read_text().splitlines()
    assert lines[0] == "emotion,pixels,Usage"
    rows = list(csv.reader(lines[1:]))
    assert len(rows) == 7 * CONFIG["fer_per_class"]
    usages = [u for _, _, u in rows]
    assert usages == sorted(usages, key=["Training", "PublicTest", "PrivateTest"].index)
    for e in range(7):
        per = [u for emo, _, u in rows if int(emo) == e]
        assert (per.count("Training"), per.count("PublicTest"), per.count("PrivateTest")) == (8, 1, 1)
    for _, pixels, _ in rows:
        values = [int(v) for v in pixels.split(" ")]
        assert len(values) == 2304 and min(values) >= 0 and max(values) <= 255
    assert summary["fer_images"] == {"Training": 56, "PublicTest": 7, "PrivateTest": 7}


def test_fer_labels_use_fer2013_order(monkeypatch):
    assert FER2013_ORDER == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
    # A fake renderer that paints the face-group index shows which class each row came from.
    monkeypatch.setattr(
        demo_writer, "render_still", lambda group, rng, size: np.full((size, size), FACE_GROUPS.index(group))
    )
    for emotion, pixels, _ in demo_writer.fer_rows(seed=0, per_class=2):
        face = CLASS_DESIGN[FER2013_ORDER[emotion]][0]
        assert int(pixels.split(" ")[0]) == FACE_GROUPS.index(face)


def test_streams_fps_audio_duration(demo):
    root, _, truth = demo
    for r in truth:
        info = _probe(root / r["path"])
        video = [s for s in info["streams"] if s["codec_type"] == "video"]
        audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
        assert len(video) == 1 and video[0]["codec_name"] == "mpeg4"
        assert video[0]["r_frame_rate"] == "25/1"
        assert (video[0]["width"], video[0]["height"]) == (SIZE, SIZE)
        assert info["format"]["format_name"] == "avi"
        if r["has_audio"] == "True":
            assert len(audio) == 1
            assert (audio[0]["codec_name"], audio[0]["sample_rate"], audio[0]["channels"]) == (
                "pcm_s16le",
                "16000",
                1,
            )
        else:
            assert audio == []
        seconds = int(r["n_frames"]) / 25
        assert CONFIG["min_seconds"] <= seconds <= CONFIG["max_seconds"]
        assert abs(float(info["format"]["duration"]) - seconds) < 0.05


def test_deterministic_bytes_and_stale_clips(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_demo(a, seed=5, face_exit_clips=0, workers=2, **SMALL)
    stray = b / "Train_AFEW" / "Angry" / "999999.avi"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"old")
    make_demo(b, seed=5, face_exit_clips=0, workers=1, **SMALL)
    assert not stray.exists()
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    # Another seed: other ids, other pixels, other FER images.
    kw = {k: SMALL[k] for k in ("clips_per_class", "min_seconds", "max_seconds")}
    plans = [plan_clips(seed=s, no_audio_clips=0, face_exit_clips=0, **kw) for s in (5, 6)]
    assert [c.clip_id for c in plans[0]] != [c.clip_id for c in plans[1]]
    spec = plans[0][0]
    other = demo_writer.write_clip(spec, tmp_path / "c", seed=6, frame_size=SMALL["frame_size"])
    assert other.read_bytes() != (a / spec.relpath).read_bytes()
    fer6 = demo_writer.fer_rows(seed=6, per_class=SMALL["fer_per_class"])
    assert [r[1] for r in fer6] != [r[1] for r in demo_writer.fer_rows(seed=5, per_class=2)]


def test_same_seed_same_arrays():
    v1 = render_clip("smile", 5, 64, np.random.default_rng([1, 2]))
    v2 = render_clip("smile", 5, 64, np.random.default_rng([1, 2]))
    v3 = render_clip("smile", 5, 64, np.random.default_rng([1, 3]))
    assert np.array_equal(v1, v2) and not np.array_equal(v1, v3)
    a1 = synth_voice("loud", SR // 2, np.random.default_rng(4))
    assert np.array_equal(a1, synth_voice("loud", SR // 2, np.random.default_rng(4)))


def test_plan_spreads_special_clips_and_validates():
    plan = plan_clips(
        seed=0, clips_per_class=2, min_seconds=1, max_seconds=4, no_audio_clips=2, face_exit_clips=2
    )
    silent = [s for s in plan if not s.has_audio]
    exits = [s for s in plan if s.exit_frames]
    assert sorted(s.split for s in silent) == ["train", "val"]
    assert sorted(s.split for s in exits) == ["train", "val"]
    assert not {s.index for s in silent} & {s.index for s in exits}
    for s in exits:
        a, b = s.exit_frames
        assert 12 <= b - a <= 25 and a >= 6 and b + 6 <= s.n_frames
    with pytest.raises(ValueError):
        plan_clips(
            seed=0, clips_per_class=1, min_seconds=2, max_seconds=1, no_audio_clips=0, face_exit_clips=0
        )
    with pytest.raises(ValueError):
        plan_clips(
            seed=0, clips_per_class=1, min_seconds=1, max_seconds=1, no_audio_clips=15, face_exit_clips=0
        )


@pytest.fixture(scope="module")
def mtcnn():
    """MTCNN on the CPU, single-threaded here: its many tiny ops are far slower with
    threads on a busy machine (restored afterwards)."""
    facenet = pytest.importorskip("facenet_pytorch")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield facenet.MTCNN(keep_all=True, device="cpu")
    torch.set_num_threads(threads)


def test_mtcnn_finds_the_face(demo, mtcnn):
    root, _, truth = demo
    sample = []
    for r in truth:
        frames = _frames(root / r["path"])
        picks = np.linspace(0, len(frames) - 1, 4).round().astype(int)
        if r["face_exit"] == "True":  # only frames well before / after the exit
            lo, hi = int(r["exit_start"]) - 6, int(r["exit_end"]) + 6
            picks = np.array([0, 1, hi + 1, len(frames) - 1])
            assert lo > 1 and hi + 1 < len(frames) - 1
        sample.extend(frames[picks])
    boxes, _ = mtcnn.detect(sample)
    found = sum(b is not None and len(b) >= 1 for b in boxes)
    assert found / len(sample) >= 0.95, f"MTCNN found a face in {found}/{len(sample)} frames"


def test_face_leaves_and_returns(demo, mtcnn):
    root, _, truth = demo
    (r,) = [r for r in truth if r["face_exit"] == "True"]
    frames = _frames(root / r["path"])
    boxes, _ = mtcnn.detect(list(frames))
    seen = np.array([b is not None for b in boxes])
    run = longest = 0
    for s in seen:
        run = 0 if s else run + 1
        longest = max(longest, run)
    assert longest >= 12  # about 0.5 s (or more) without a face
    assert seen[:3].all() and seen[-3:].all()
    assert not seen[int(r["exit_start"]) : int(r["exit_end"])].any()


def test_voice_groups_differ_in_pitch_and_energy(demo):
    root, _, truth = demo
    stats: dict[str, list[tuple[float, float]]] = {}
    for r in truth:
        if r["has_audio"] == "True":
            stats.setdefault(r["voice_group"], []).append(_pitch_and_level(_audio(root / r["path"])))
    f0 = {g: np.mean([p for p, _ in v]) for g, v in stats.items()}
    level = {g: np.mean([lv for _, lv in v]) for g, v in stats.items()}
    assert f0["low_slow"] < f0["flat"] < f0["loud"] < f0["high_fast"], f0
    assert 80 < f0["low_slow"] < 125 and 220 < f0["high_fast"] < 360, f0
    assert level["low_slow"] < level["flat"] < level["loud"], level


def test_voice_groups_separable_but_overlapping():
    """Over many speakers: group means in the intended order, with some overlap in F0."""
    f0 = {g: [] for g in ("flat", "loud", "high_fast", "low_slow")}
    for g in f0:
        for i in range(12):
            f0[g].append(_pitch_and_level(synth_voice(g, 2 * SR, np.random.default_rng([7, i])))[0])
    assert np.mean(f0["low_slow"]) + 15 < np.mean(f0["flat"]) < np.mean(f0["loud"]) - 15
    assert max(f0["low_slow"]) > min(f0["flat"]) - 15  # neighbours come close
