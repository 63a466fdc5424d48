"""Synthetic face caches for the CNN tests: aligned 112 px crops rendered with the demo's face
model (:mod:`avfer.demo.faces`), so the face carries the demo's four face groups.

Each clip has a few faceless frames (``has_face`` false, black crop); the first val and test clips
have no face at all (status ``no_face``) and the train split has one ``failed`` clip without
datasets, as a face stage writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avfer.demo import CLASS_DESIGN
from avfer.demo.faces import Pose, expression_weights, render
from avfer.io import h5_writer, write_clip
from avfer.labels import EMOTIONS

SIZE = 112


def face_group(label: str) -> str:
    """The demo face group that carries ``label`` (smile, frown, surprised, neutral)."""
    return CLASS_DESIGN[label][0]


def render_aligned_clip(label: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """An aligned face crop sequence ``[n, 112, 112, 3]`` uint8 of ``label``'s face group."""
    face_px = rng.uniform(80, 92)  # MTCNN box height: an aligned crop has a margin around it
    cx, cy = SIZE / 2 + rng.uniform(-3, 3), SIZE / 2 + rng.uniform(2, 8)
    angle, flip = rng.uniform(-5, 5), bool(rng.integers(2))
    ramp = np.clip(np.linspace(-0.3, 1.5, n_frames), 0, 1) * rng.uniform(0.8, 1.2)
    weights = expression_weights(face_group(label), ramp, rng.uniform(-0.05, 0.1, 4))
    gain, offset = rng.uniform(0.8, 1.1), rng.uniform(-15, 15)
    out = np.empty((n_frames, SIZE, SIZE, 3), np.uint8)
    for i in range(n_frames):
        pose = Pose(cx + rng.normal(0, 0.8), cy + rng.normal(0, 0.8), face_px, angle + rng.normal(0, 1), flip)
        frame = render(pose, weights[i], SIZE) * gain + offset + rng.normal(0, 2, (SIZE, SIZE, 3))
        out[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def write_face_caches(
    root: str | Path,
    *,
    clips_per_class: int = 3,
    frames: tuple[int, int] = (12, 30),
    seed: int = 0,
    broken: bool = False,
) -> list[Path]:
    """Write ``<root>/faces/<split>-000.h5`` for train/val/test (test unlabelled); return them.

    ``broken`` adds to every split ``<split>_failed`` (an unreadable file: no datasets) and
    ``<split>_empty`` (a video without a decodable frame: ``no_face`` with zero-length datasets),
    both labelled Angry outside test."""
    rng = np.random.default_rng(seed)
    paths = []
    for split in ("train", "val", "test"):
        path = Path(root) / "faces" / f"{split}-000.h5"
        with h5_writer(path, "faces", creator="tests.face_caches") as f:
            for c, label in enumerate(EMOTIONS):
                for k in range(clips_per_class):
                    clip_id = f"{split}_{label}_{k:02d}"
                    lab = label if split != "test" else ""
                    if split == "train" and c == 0 and k == 0:
                        write_clip(f, clip_id, {}, split=split, label=lab, status="failed", error="decode")
                        continue
                    n = int(rng.integers(frames[0], frames[1] + 1))
                    faces = render_aligned_clip(label, n, rng)
                    has_face = rng.random(n) > 0.1
                    if split != "train" and c == 0 and k == 0:
                        has_face[:] = False
                    faces[~has_face] = 0
                    status = "ok" if has_face.any() else "no_face"
                    data = {
                        "faces": faces,
                        "frame_index": np.arange(n, dtype=np.int32),
                        "timestamp": np.arange(n) / 25.0,
                        "box": np.zeros((n, 4), np.float32),
                        "landmarks": np.zeros((n, 5, 2), np.float32),
                        "prob": has_face.astype(np.float32),
                        "has_face": has_face,
                    }
                    write_clip(f, clip_id, data, split=split, label=lab, status=status)
            if broken:
                write_broken_faces(f, split)
        paths.append(path)
    return paths


def write_broken_faces(f, split: str) -> None:
    """The two zero-length clips of :func:`write_face_caches` (``broken``) in the open cache ``f``."""
    label = "Angry" if split != "test" else ""
    write_clip(f, f"{split}_failed", {}, split=split, label=label, status="failed", error="unreadable")
    empty = {
        "faces": np.zeros((0, SIZE, SIZE, 3), np.uint8),
        "frame_index": np.zeros(0, np.int32),
        "timestamp": np.zeros(0),
        "box": np.zeros((0, 4), np.float32),
        "landmarks": np.zeros((0, 5, 2), np.float32),
        "prob": np.zeros(0, np.float32),
        "has_face": np.zeros(0, bool),
    }
    write_clip(f, f"{split}_empty", empty, split=split, label=label, status="no_face")
