"""Per-clip sequences: caches joined by clip id, failed / audio-less clips, train-only
standardisation, padding in batches."""

import numpy as np
import pytest
import torch
from synth_caches import write_synthetic_caches

from avfer.data.sequences import (
    SequenceDataset,
    Standardizer,
    collate_sequences,
    fit_standardizers,
    load_clips,
    standardize,
)
from avfer.io import CacheError, h5_writer, write_clip

KEYS = ("video", "video_mask", "audio", "audio_mask", "functionals", "has_audio")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return write_synthetic_caches(tmp_path_factory.mktemp("seq"), clips_per_class=2)


def test_load_clips_joins_both_caches(caches):
    clips = load_clips(caches["features"], caches["audio"], keys=KEYS)
    assert len(clips) == 42 and {c.split for c in clips} == {"train", "val", "test"}
    for clip in clips:
        assert set(clip.arrays) == set(KEYS)
        t = len(clip.arrays["video"])
        assert clip.arrays["video_mask"].shape == clip.arrays["audio_mask"].shape == (t,)
        assert clip.arrays["functionals"].shape == (12,)
    no_audio = [c for c in clips if not c.arrays["has_audio"]]
    assert [c.clip_id for c in no_audio] == ["train_Angry_00", "train_Happy_00"]
    assert not no_audio[0].arrays["audio_mask"].any()
    test = [c for c in clips if c.split == "test"]
    assert all(c.label == "" and c.target == -1 for c in test)
    only_audio = load_clips(audio_paths=caches["audio"], keys=("functionals", "has_audio"))
    assert set(only_audio[0].arrays) == {"functionals", "has_audio"}


def test_failed_clip_and_length_mismatch(tmp_path):
    with h5_writer(tmp_path / "f.h5", "features", creator="t") as f:
        write_clip(
            f, "a", {"features": np.ones((10, 3), np.float32), "mask": np.ones(10, bool)}, split="train"
        )
        write_clip(f, "b", {}, split="train", status="failed", error="boom")
    with h5_writer(tmp_path / "a.h5", "audio", creator="t") as f:
        data = {"lld": np.ones((12, 2), np.float32), "lld_mask": np.ones(12, bool), "functionals": np.ones(4)}
        write_clip(f, "a", data, split="train")
        write_clip(
            f, "b", {**data, "lld": np.ones((7, 2), np.float32), "lld_mask": np.ones(7, bool)}, split="train"
        )
    a, b = load_clips([tmp_path / "f.h5"], [tmp_path / "a.h5"], keys=KEYS)
    assert a.arrays["audio"].shape == (10, 2)  # cut to the video grid
    assert b.arrays["video"].shape == (7, 3) and not b.arrays["video_mask"].any()  # failed: empty
    with h5_writer(tmp_path / "g.h5", "features", creator="t") as f:
        write_clip(f, "z", {"features": np.ones((3, 3), np.float32), "mask": np.ones(3, bool)}, split="train")
    with pytest.raises(CacheError, match="only one of the feature and audio caches"):
        load_clips([tmp_path / "g.h5"], [tmp_path / "a.h5"], keys=KEYS)


def test_standardisation_uses_training_frames_only(caches):
    clips = load_clips(caches["features"], caches["audio"], keys=KEYS)
    norms = fit_standardizers(clips)
    for clip in clips:
        if clip.split == "val":
            clip.arrays["video"] += 1000.0  # val content must not move the statistics
    again = fit_standardizers(clips)
    np.testing.assert_array_equal(norms["video"].mean, again["video"].mean)
    standardize(clips, norms)
    train = [c for c in clips if c.split == "train"]
    frames = np.concatenate([c.arrays["audio"][c.arrays["audio_mask"]] for c in train])
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(frames.std(0), 1, atol=1e-3)
    no_audio = next(c for c in clips if not c.arrays["has_audio"])
    assert not no_audio.arrays["functionals"].any() and not no_audio.arrays["audio"].any()
    state = Standardizer.from_state(norms["video"].state())
    np.testing.assert_array_equal(state.std, norms["video"].std)


def test_collate_pads_frames_and_masks(caches):
    clips = load_clips(caches["features"], caches["audio"], keys=KEYS)[:3]
    batch, targets = collate_sequences([SequenceDataset(clips)[i] for i in range(3)])
    longest = max(len(c.arrays["video"]) for c in clips)
    assert batch["video"].shape == (3, longest, 16) and batch["audio_mask"].dtype == torch.bool
    assert batch["functionals"].shape == (3, 12) and batch["has_audio"].shape == (3,)
    for i, clip in enumerate(clips):
        assert batch["video_mask"][i, len(clip.arrays["video"]) :].sum() == 0
    assert targets.tolist() == [c.target for c in clips]
