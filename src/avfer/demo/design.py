"""The demo dataset's design (class -> face group + voice group) and its clip plan."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avfer.demo.faces import FACE_GROUPS
from avfer.demo.voice import VOICE_GROUPS
from avfer.labels import EMOTIONS

FPS = 25
# Our split name -> AFEW folder. Test_AFEW is flat (no emotion folders), as in EmotiW.
SPLIT_DIRS: dict[str, str] = {"train": "Train_AFEW", "val": "Val_AFEW", "test": "Test_AFEW"}
# FER2013's own label order (its ``emotion`` column), which differs from EMOTIONS.
FER2013_ORDER: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

# Each class is a (face group, voice group) pair: one modality alone confuses some classes,
# both together separate all seven.
CLASS_DESIGN: dict[str, tuple[str, str]] = {
    "Angry": ("frown", "loud"),
    "Disgust": ("frown", "flat"),
    "Fear": ("surprised", "high_fast"),
    "Happy": ("smile", "high_fast"),
    "Neutral": ("neutral", "flat"),
    "Sad": ("neutral", "low_slow"),
    "Surprise": ("surprised", "flat"),
}
assert set(CLASS_DESIGN) == set(EMOTIONS)
assert {f for f, _ in CLASS_DESIGN.values()} == set(FACE_GROUPS)
assert {v for _, v in CLASS_DESIGN.values()} == set(VOICE_GROUPS)
assert len(set(CLASS_DESIGN.values())) == len(EMOTIONS)

# Streams of the seeded generators: the plan, one per clip, one per FER image.
PLAN_STREAM, CLIP_STREAM, FER_STREAM = 0, 1, 2
EXIT_MIN_FRAMES = 40  # a face-exit clip needs room to show, lose and regain the face


@dataclass(frozen=True)
class ClipSpec:
    """One clip of the plan. ``exit_frames`` = (first, last+1) frame with the face out of view."""

    index: int
    clip_id: str
    split: str
    label: str
    n_frames: int
    has_audio: bool = True
    exit_frames: tuple[int, int] | None = None

    @property
    def face_group(self) -> str:
        return CLASS_DESIGN[self.label][0]

    @property
    def voice_group(self) -> str:
        return CLASS_DESIGN[self.label][1]

    @property
    def relpath(self) -> str:
        """Path under the dataset root: labelled splits by emotion folder, test flat."""
        folder = SPLIT_DIRS[self.split]
        if self.split == "test":
            return f"{folder}/{self.clip_id}.avi"
        return f"{folder}/{self.label}/{self.clip_id}.avi"


def _spread(rng: np.random.Generator, pools: list[list[int]], k: int, start: int) -> list[int]:
    """Pick ``k`` items alternating between shuffled ``pools`` (beginning with ``start``)."""
    shuffled = [list(rng.permutation(p)) for p in pools]
    picked: list[int] = []
    turn = start
    while len(picked) < k:
        pool = shuffled[turn % len(pools)]
        if pool:
            picked.append(int(pool.pop()))
        elif not any(shuffled):
            raise ValueError(f"not enough labelled clips for {k} special clips")
        turn += 1
    return picked


def plan_clips(
    *,
    seed: int,
    clips_per_class: int,
    min_seconds: float,
    max_seconds: float,
    no_audio_clips: int,
    face_exit_clips: int,
) -> list[ClipSpec]:
    """Deterministic plan of every clip: ids, splits, labels, lengths and special cases.

    Ids are unique random 6-digit strings (they reveal neither label nor split). Clips
    without audio and face-exit clips are distinct, drawn from train and val alternately.
    """
    if seed < 0 or clips_per_class < 1:
        raise ValueError("seed must be >= 0 and clips_per_class >= 1")
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    n_min, n_max = max(1, round(min_seconds * FPS)), max(1, round(max_seconds * FPS))
    if face_exit_clips and n_max < EXIT_MIN_FRAMES:
        raise ValueError(f"face-exit clips need max_seconds >= {EXIT_MIN_FRAMES / FPS}")
    rng = np.random.default_rng([seed, PLAN_STREAM])
    rows = [(s, label) for s in SPLIT_DIRS for label in EMOTIONS for _ in range(clips_per_class)]
    ids = rng.choice(900_000, size=len(rows), replace=False) + 100_000
    frames = rng.integers(n_min, n_max + 1, size=len(rows))
    pools = [[i for i, (s, _) in enumerate(rows) if s == split] for split in ("train", "val")]
    special = _spread(rng, pools, no_audio_clips + face_exit_clips, start=0)
    silent, exits = set(special[:no_audio_clips]), special[no_audio_clips:]
    exit_frames: dict[int, tuple[int, int]] = {}
    for i in exits:
        n = frames[i] = max(int(frames[i]), min(60, n_max))
        out = int(np.clip(round(rng.uniform(0.5, 1.0) * FPS), 4, 0.3 * n))
        free = n - out - 12  # 6 frames to slide out, 6 to slide back
        start = 6 + int(rng.integers(free // 3, 2 * free // 3 + 1))
        exit_frames[i] = (start, start + out)
    return [
        ClipSpec(
            index=i,
            clip_id=str(ids[i]),
            split=split,
            label=label,
            n_frames=int(frames[i]),
            has_audio=i not in silent,
            exit_frames=exit_frames.get(i),
        )
        for i, (split, label) in enumerate(rows)
    ]
