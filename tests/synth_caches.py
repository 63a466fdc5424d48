"""Synthetic feature and audio caches with the demo's design (tests of the sequence models and
fusion): each emotion is a (face group, voice group) pair, so the face alone separates 4 groups,
the voice alone 4 groups, and both together all 7 emotions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avfer.io import h5_writer, write_clip
from avfer.labels import EMOTIONS

FACE = {"Neutral": 0, "Sad": 0, "Angry": 1, "Disgust": 1, "Fear": 2, "Surprise": 2, "Happy": 3}
VOICE = {"Neutral": 0, "Disgust": 0, "Surprise": 0, "Sad": 1, "Angry": 2, "Fear": 3, "Happy": 3}


def write_synthetic_caches(
    root: str | Path,
    *,
    backbone: str = "synth",
    clips_per_class: int = 6,
    video_dim: int = 16,
    lld_dim: int = 8,
    func_dim: int = 12,
    noise: float = 1.0,
    seed: int = 0,
    broken: bool = False,
) -> dict[str, list[str]]:
    """Write ``<root>/features/<backbone>/<split>-000.h5`` and ``<root>/audio/<split>-000.h5``.

    Test clips are unlabelled (their truth goes to ``<root>/truth.csv``). Clip ``*_00`` of the
    train split has no audio; every clip has a few faceless frames. ``broken`` adds to every split
    the zero-length clips of :func:`write_broken_clips`.
    """
    rng = np.random.default_rng(seed)
    face_centers = rng.normal(0, 1.5, (4, video_dim))
    voice_centers = rng.normal(0, 1.5, (4, lld_dim))
    func_proj = rng.normal(0, 1, (lld_dim, func_dim))
    root = Path(root)
    paths: dict[str, list[str]] = {"features": [], "audio": []}
    truth = []
    for split in ("train", "val", "test"):
        fpath = root / "features" / backbone / f"{split}-000.h5"
        apath = root / "audio" / f"{split}-000.h5"
        with (
            h5_writer(fpath, "features", creator="synthetic") as ff,
            h5_writer(apath, "audio", creator="synthetic") as fa,
        ):
            fa.attrs["lld_names"] = [f"lld{i}" for i in range(lld_dim)]
            fa.attrs["functional_names"] = [f"fn{i}" for i in range(func_dim)]
            for emo in EMOTIONS:
                for k in range(clips_per_class):
                    clip_id = f"{split}_{emo}_{k:02d}"
                    label = emo if split != "test" else ""
                    truth.append((clip_id, emo))
                    t = int(rng.integers(25, 101))
                    video = face_centers[FACE[emo]] + noise * rng.normal(0, 1, (t, video_dim))
                    mask = rng.random(t) > 0.1
                    video[~mask] = 0.0
                    write_clip(
                        ff,
                        clip_id,
                        {"features": video.astype(np.float32), "mask": mask},
                        split=split,
                        label=label,
                    )
                    no_audio = split == "train" and k == 0 and emo in ("Angry", "Happy")
                    lld = 10 + voice_centers[VOICE[emo]] + noise * rng.normal(0, 1, (t, lld_dim))
                    lld_mask = np.ones(t, dtype=bool)
                    functionals = lld.mean(0) @ func_proj + 0.3 * noise * rng.normal(0, 1, func_dim)
                    if no_audio:
                        lld[:], lld_mask[:], functionals[:] = 0.0, False, 0.0
                    write_clip(
                        fa,
                        clip_id,
                        {
                            "lld": lld.astype(np.float32),
                            "lld_mask": lld_mask,
                            "functionals": functionals.astype(np.float32),
                        },
                        split=split,
                        label=label,
                        status="no_audio" if no_audio else "ok",
                    )
            if broken:
                write_broken_clips(ff, fa, split, lld_dim, func_dim, video_dim)
        paths["features"].append(str(fpath))
        paths["audio"].append(str(apath))
    (root / "truth.csv").write_text("clip_id,label\n" + "".join(f"{c},{e}\n" for c, e in truth))
    return paths


def write_broken_clips(ff, fa, split: str, lld_dim: int, func_dim: int, video_dim: int) -> None:
    """Two zero-length clips (label Angry, unlabelled in test) as the stages write them:
    ``<split>_failed`` (an unreadable file: no feature datasets, audio ``failed`` with ``T = 0``)
    and ``<split>_empty`` (a video without a decodable frame: an empty grid, ``no_face`` and
    ``no_audio``)."""
    label = "Angry" if split != "test" else ""
    audio = {
        "lld": np.zeros((0, lld_dim), np.float32),
        "lld_mask": np.zeros(0, bool),
        "functionals": np.zeros(func_dim, np.float32),
    }
    write_clip(ff, f"{split}_failed", {}, split=split, label=label, status="failed", error="unreadable")
    write_clip(fa, f"{split}_failed", audio, split=split, label=label, status="failed", error="unreadable")
    empty = {"features": np.zeros((0, video_dim), np.float32), "mask": np.zeros(0, bool)}
    write_clip(ff, f"{split}_empty", empty, split=split, label=label, status="no_face")
    write_clip(fa, f"{split}_empty", audio, split=split, label=label, status="no_audio")
