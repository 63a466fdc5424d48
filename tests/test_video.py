"""avfer.video: probing, the 25 fps grid, and decoding onto it (CFR 23.976/30 fps, VFR, rotation,
truncated, corrupt and empty files)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from avfer.video import GridDecoder, VideoError, decode_grid, frame_times, grid_length, probe, scaled_size

STEP = 7  # grey level step between consecutive synthetic frames (frame n has level 2 + 7 * (n % 36))


def write_numbered(path: Path, n: int, fps: float, *, setpts: str | None = None, size: int = 32) -> Path:
    """A lossless (FFV1) grey video whose frame ``n`` has a level that encodes ``n``."""
    levels = (2 + STEP * (np.arange(n) % 36)).astype(np.uint8)
    frames = np.repeat(levels[:, None, None], size * size, axis=1).reshape(n, size, size)
    vf = ["-vf", f"setpts='{setpts}'", "-fps_mode", "vfr"] if setpts else []
    cmd = [
        "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{size}x{size}",
        "-r", str(fps), "-i", "-", *vf, "-c:v", "ffv1", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return path


def packet_times(path: Path) -> np.ndarray:
    """Presentation times of the video packets as the container stores them (sorted)."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time"]
    out = subprocess.run([*cmd, "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True)
    return np.sort([float(x) for x in out.stdout.split()])


def frame_numbers(frames: np.ndarray) -> np.ndarray:
    """Decode the frame numbers (modulo 36) back from the grey levels."""
    level = frames[..., 0].reshape(len(frames), -1).mean(1)
    return np.round((level - 2) / STEP).astype(int) % 36


def test_grid_length_and_times():
    assert grid_length(2.4) == 60
    assert grid_length(19.685) == 492
    assert grid_length(0.001) == 1
    np.testing.assert_allclose(frame_times(3), [0.0, 0.04, 0.08])


def test_scaled_size_only_shrinks():
    assert scaled_size((1280, 720), 480) == (480, 270)
    assert scaled_size((320, 240), 480) == (320, 240)
    assert scaled_size((1280, 720), 0) == (1280, 720)


@pytest.mark.parametrize("fps", [30.0, 24000 / 1001, 50.0, 12.5])
def test_cfr_resampled_to_the_frame_on_screen(tmp_path, fps):
    n = int(fps * 2.2)
    path = write_numbered(tmp_path / "clip.mkv", n, fps)
    info = probe(path)
    g = decode_grid(path)
    assert len(g) == grid_length(info.duration) == round(n / fps * 25)
    t = np.arange(len(g)) / 25
    pts = packet_times(path)  # n / fps, rounded to the container's time base
    np.testing.assert_allclose(pts, np.arange(n) / fps, atol=1e-3)
    shown = np.searchsorted(pts, t + 1e-6, side="right") - 1  # last frame starting at or before t
    np.testing.assert_array_equal(g.source_index, shown)
    np.testing.assert_array_equal(frame_numbers(g.frames), shown % 36)
    np.testing.assert_allclose(g.source_time, pts[shown], atol=1e-6)
    assert (g.source_time <= t + 1e-4).all()


def test_vfr_uses_real_timestamps(tmp_path):
    # 30 fps, then a 0.1 s gap after frame 9, then 15 fps
    setpts = "(if(lt(N,10),N/30,0.4+(N-10)/15))/TB"
    path = write_numbered(tmp_path / "vfr.mkv", 30, 30, setpts=setpts)
    pts = packet_times(path)
    expected = [n / 30 if n < 10 else 0.4 + (n - 10) / 15 for n in range(29)]  # (ffmpeg moves the last)
    np.testing.assert_allclose(pts[:29], expected, atol=1e-3)
    g = decode_grid(path)
    assert len(g) == grid_length(probe(path).duration)
    t = np.arange(len(g)) / 25
    shown = np.searchsorted(pts, t + 1e-6, side="right") - 1
    np.testing.assert_array_equal(g.source_index, shown)
    np.testing.assert_array_equal(frame_numbers(g.frames), shown % 36)
    np.testing.assert_allclose(g.source_time, pts[shown], atol=1e-6)


def test_real_clip_23976(pyfeat_media):
    path = pyfeat_media / "WolfgangLanger_Pexels.mp4"
    info = probe(path)
    assert (info.width, info.height, info.rotation, info.sar) == (640, 360, 0, 1.0)
    dec = GridDecoder(path, info, detect_size=320)
    sizes, n, idx, times = set(), 0, [], []
    for b in dec.batches(64):
        sizes.add((b.frames.shape[1:], b.smalls.shape[1:]))
        n += len(b)
        idx.append(b.source_index)
        times.append(b.source_time)
    idx, times = np.concatenate(idx), np.concatenate(times)
    assert n == dec.n_frames == grid_length(info.duration) == 492
    assert sizes == {((360, 640, 3), (180, 320, 3))}
    assert (np.diff(idx) >= 0).all() and idx[0] == 0 and dec.missing == 0
    t = np.arange(n) / 25
    assert (times <= t + 1e-4).all() and (times > t - 1001 / 24000 - 1e-4).all()


def test_vfr_real_clip(pyfeat_media):
    """no_face.mp4: avg 23.67 fps, 98 frames declared, 95 decodable."""
    path = pyfeat_media / "no_face.mp4"
    g = decode_grid(path, detect_size=240)
    assert len(g) == grid_length(probe(path).duration) == 99
    assert g.valid.all() and g.smalls.shape[1:] == (135, 240, 3) and g.frames.shape[1:] == (540, 960, 3)


def test_thirty_fps_reencode(tmp_path, pyfeat_media):
    """A real clip re-encoded at 30 fps (H.264 in MP4): T from the container, real timestamps."""
    src = pyfeat_media / "WolfgangLanger_Pexels.mp4"
    path = tmp_path / "w30.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-t", "3", "-i", str(src), "-vf", "fps=30", "-c:v", "libx264"]
    subprocess.run([*cmd, "-preset", "ultrafast", "-an", str(path)], check=True)
    info = probe(path)
    assert info.fps == 30.0
    g = decode_grid(path)
    assert len(g) == grid_length(info.duration) == 75
    np.testing.assert_array_equal(g.source_index, np.floor(np.arange(75) * 30 / 25 + 1e-6))
    np.testing.assert_allclose(g.source_time, g.source_index / 30, atol=1e-3)


def test_rotation_and_sar_give_display_frames(tmp_path, pyfeat_media):
    src = pyfeat_media / "single_face.mp4"
    rot, sar = tmp_path / "rot.mp4", tmp_path / "sar.mkv"
    base = ["ffmpeg", "-v", "error", "-y", "-t", "1", "-i", str(src)]
    subprocess.run([*base, "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rot)], check=True)
    subprocess.run([*base, "-vf", "setsar=4/3", "-c:v", "ffv1", "-an", str(sar)], check=True)
    info = probe(rot)
    if info.rotation == 0:
        pytest.skip("this ffmpeg does not write the rotate tag as a display matrix")
    assert info.display_size == (360, 640)
    assert decode_grid(rot).frames.shape[1:] == (640, 360, 3)
    info = probe(sar)
    assert info.sar == pytest.approx(4 / 3) and info.display_size == (853, 360)
    assert decode_grid(sar, detect_size=426).smalls.shape[1:] == (180, 426, 3)


def test_truncated_stream_marks_missing_frames(tmp_path, pyfeat_media):
    data = (pyfeat_media / "WolfgangLanger_Pexels.mp4").read_bytes()  # moov first: half decodes
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    g = decode_grid(path)
    assert len(g) == grid_length(probe(path).duration) == 492
    assert 100 < g.valid.sum() < 450
    last = np.flatnonzero(g.valid)[-1]
    assert not g.valid[last + 1 :].any() and not g.frames[last + 1 :].any()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\x00garbage" * 1000, "unreadable"), (None, "does not exist")],
)
def test_bad_files_raise_one_line_errors_with_the_name(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message) as err:
        decode_grid(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_moov_at_end_truncated_is_unreadable(tmp_path, pyfeat_media):
    data = (pyfeat_media / "single_face.mp4").read_bytes()  # moov last: nothing to decode
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="cut.mp4"):
        decode_grid(path)


def test_stopping_early_ends_ffmpeg(pyfeat_media):
    dec = GridDecoder(pyfeat_media / "WolfgangLanger_Pexels.mp4")
    it = dec.batches(8)
    first = next(it)
    it.close()
    assert len(first) == 8 and dec.decoded < 100
