"""The in-memory face-frame data path and the tensor transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avfer.data.frames import FrameBatchSampler, FrameStore, batch_loader, even_subsample
from avfer.data.transforms import AUGMENT_PRESETS, FaceTransform, fit_images, normalize
from avfer.io import h5_writer, write_clip


def _face_cache(path, clips):
    """clips: (clip_id, split, label, has_face list, status)."""
    with h5_writer(path, "faces", creator="test") as f:
        for clip_id, split, label, has_face, status in clips:
            if status == "failed":
                write_clip(f, clip_id, {}, split=split, label=label, status="failed", error="boom")
                continue
            n = len(has_face)
            faces = np.zeros((n, 16, 16, 3), np.uint8)
            faces[:] = (np.arange(n) * 10 + 5).astype(np.uint8)[:, None, None, None]  # frame t = 10 t + 5
            data = {
                "faces": faces,
                "frame_index": np.arange(n, dtype=np.int32),
                "timestamp": np.arange(n) / 25,
                "box": np.zeros((n, 4), np.float32),
                "landmarks": np.zeros((n, 5, 2), np.float32),
                "prob": np.ones(n, np.float32),
                "has_face": np.array(has_face, bool),
            }
            write_clip(f, clip_id, data, split=split, label=label, status=status)


@pytest.fixture
def cache(tmp_path):
    path = tmp_path / "train-000.h5"
    _face_cache(
        path,
        [
            ("a", "train", "Happy", [1, 1, 0, 1, 1, 1, 1, 1, 1, 1], "ok"),
            ("b", "train", "Sad", [0, 1, 1], "ok"),
            ("c", "train", "Fear", [0, 0, 0], "no_face"),
            ("d", "train", "Angry", [], "failed"),
            ("e", "test", "", [1, 1], "ok"),
        ],
    )
    return path


def test_frame_store_keeps_face_frames_only(cache):
    store = FrameStore.from_caches([cache], size=8, chans=1)
    assert list(store.clips["clip_id"]) == ["a", "b", "c", "d", "e"]
    assert list(store.clips["n_faces"]) == [9, 2, 0, 0, 2]
    assert list(store.clips["n_frames"]) == [10, 3, 3, 0, 2]
    assert store.images.shape == (13, 8, 8, 1) and store.images.dtype == np.uint8
    a = store.clip == 0
    assert list(store.t[a]) == [0, 1, 3, 4, 5, 6, 7, 8, 9]
    assert list(store.images[a][:, 0, 0, 0]) == [10 * t + 5 for t in store.t[a]]  # grey of a grey frame
    assert list(store.targets[store.clip == 4]) == [-1, -1]
    labelled = FrameStore.from_caches([cache], size=8, chans=1, labelled_only=True)
    assert list(labelled.clips["clip_id"]) == ["a", "b", "c", "d"]


def test_sampler_caps_frames_per_clip_and_is_reproducible():
    groups = np.repeat([0, 1, 2], [50, 3, 10])
    s = FrameBatchSampler(groups, 4, frames_per_clip=5, shuffle=True, seed=1)
    batches = list(s)
    idx = np.concatenate(batches)
    assert len(batches) == len(s) == 4 and len(idx) == 13 == len(set(idx))
    assert np.bincount(groups[idx]).tolist() == [5, 3, 5]
    s.generator.manual_seed(7)
    first = list(s)
    s.generator.manual_seed(7)
    assert list(s) == first
    everything = FrameBatchSampler(groups, 10, shuffle=False)
    assert np.concatenate(list(everything)).tolist() == list(range(63))
    assert len(FrameBatchSampler(groups, 10, shuffle=True, drop_last=True)) == 6


def test_batch_loader_yields_uint8_batches(cache):
    store = FrameStore.from_caches([cache], size=8, chans=3)
    loader = batch_loader(store.images, store.targets, store.clip, batch_size=4, shuffle=True, seed=0)
    x, y = next(iter(loader))
    assert x.dtype == torch.uint8 and x.shape == (4, 8, 8, 3) and y.dtype == torch.int64


def test_even_subsample():
    groups = np.repeat([0, 1], [10, 2])
    assert even_subsample(groups, 3).tolist() == [0, 4, 9, 10, 11]  # ends of each clip kept
    assert even_subsample(groups, None).tolist() == list(range(12))


def test_fit_images_grey_resize_and_identity():
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 200, 50
    grey = fit_images(rgb, 2, 1)
    assert grey.shape == (2, 2, 2, 1)
    assert int(grey[0, 0, 0, 0]) == round(0.299 * 100 + 0.587 * 200 + 0.114 * 50)
    same = torch.zeros(3, 5, 5, 1, dtype=torch.uint8)
    assert fit_images(same, 5, 1) is same
    assert fit_images(np.full((1, 6, 6, 1), 7, np.uint8), 3, 3).unique().tolist() == [7]
    with pytest.raises(ValueError, match="uint8"):
        fit_images(np.zeros((1, 4, 4, 3), np.float32), 2, 1)


def test_normalize_and_transform_modes():
    x = torch.full((2, 6, 6, 1), 255, dtype=torch.uint8)
    assert torch.allclose(normalize(x), torch.ones(2, 1, 6, 6))
    tf = FaceTransform(32, 1, augment="standard")
    faces = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    tf.eval()
    assert torch.equal(tf(faces), tf(faces)) and tf(faces).shape == (4, 1, 32, 32)
    tf.train()
    torch.manual_seed(0)
    a = tf(faces)
    torch.manual_seed(0)
    assert torch.equal(a, tf(faces)) and not torch.equal(a, tf(faces))
    assert set(AUGMENT_PRESETS) == {"none", "light", "standard"}
    assert FaceTransform(32, 1, augment="none").train().augment is None
