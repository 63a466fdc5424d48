"""A long clip through every stage, reporting peak RSS above the imports per stage (run in its
own process by tests/test_scale.py, once per clip length): ``python long_clip.py WORK REPO SECONDS``."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch  # noqa: F401  (the imports' memory is the baseline)

from avfer.config import validate_config
from avfer.faces import FaceSettings
from avfer.faces.cache import build_face_shard
from avfer.faces.pipeline import face_layout
from avfer.io import ClipWriter, h5_writer
from avfer.labels import EMOTIONS
from avfer.train.cnn import finetune
from avfer.train.cnn_predict import extract_features
from avfer.train.sequence import train_sequence_model


def rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def face_cache(path: Path, n: int) -> None:
    """Clip c00 of ``n`` frames (a face every 50th), 14 clips of 30 frames; 112 px crops, as the
    face stage writes them (what holding the long clip would cost: 37.6 kB a frame)."""
    with h5_writer(path, "faces", creator="test") as f:
        for c in range(15):
            k = n if c == 0 else 30
            split = "val" if c % 3 == 1 else "train"
            w = ClipWriter(f, f"c{c:02d}", face_layout(112), split=split, label=EMOTIONS[c % 7])
            for s in range(0, k, 2000):
                m = min(2000, k - s)
                t = np.arange(s, s + m)
                w.append(
                    {
                        "faces": np.full((m, 112, 112, 3), 40 + 20 * (c % 7), np.uint8),
                        "frame_index": t.astype(np.int32),
                        "timestamp": t / 25.0,
                        "source_time": t / 25.0,
                        "box": np.zeros((m, 4), np.float32),
                        "landmarks": np.zeros((m, 5, 2), np.float32),
                        "prob": np.ones(m, np.float32),
                        "has_face": (t % 50 == 0) if c == 0 else np.ones(m, bool),
                    }
                )
            w.close("ok")


def main() -> None:
    work, seconds = Path(sys.argv[1]), int(sys.argv[3])
    n = seconds * 25
    video = work / "long.mp4"
    lavfi = f"color=c=gray:s=48x48:d={seconds}:r=25"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", lavfi, "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(video)],
        check=True,
    )  # fmt: skip
    cnn = validate_config({"cnn": {"backbones": ["mini_xception"], "pretrained": "none"}})["cnn"]
    cnn |= {"input_size": 32, "in_chans": 1, "device": "cpu", "frames_per_clip": 4, "val_frames_per_clip": 4}
    cnn["train"] = {**cnn["train"], "epochs": 1, "batch_size": 32, "patience": 0}
    base = rss()
    out: dict = {}
    # 1. the face stage: the video (no face) streamed into a face cache of 112 px crops
    row = {"clip_id": "long", "path": str(video), "split": "train", "label": "Happy", "shard": "train-000"}
    settings = FaceSettings.from_config({"device": "cpu", "keyframe_every": 250, "min_face_size": 40})
    build_face_shard(pd.DataFrame([row]), work / "video.h5", settings, threads=1)
    out["faces"] = rss() - base
    # 2. fine-tuning on a face cache holding a clip of the same length
    face_cache(work / "faces.h5", n)
    paths = {
        "model_path": work / "model.pt",
        "predictions_path": work / "p.csv",
        "metrics_path": work / "m.json",
    }
    finetune("mini_xception", [work / "faces.h5"], cnn, **paths, seed=0, threads=1)
    out["finetune"] = rss() - base
    # 3. CNN features of both long clips
    extract_features(work / "model.pt", work / "video.h5", work / "feat_video.h5", device="cpu", threads=1)
    extract_features(work / "model.pt", work / "faces.h5", work / "feat.h5", device="cpu", threads=1)
    out["features"] = rss() - base
    # 4. a windowed temporal model on the features (the long clip: one training item of windows)
    args = {"hidden_size": 16, "num_layers": 1, "dropout": 0.0, "pooling": "mean", "attention_dim": 8}
    args |= {"window": 50, "stride": 25}
    train = {"epochs": 1, "lr": 0.003, "weight_decay": 0.0, "batch_size": 4, "patience": 0}
    train |= {"balanced_loss": False, "amp": False, "grad_clip": 0, "score": "accuracy"}
    outs = {"out_model": work / "g.pt", "out_predictions": work / "g.csv", "out_metrics": work / "g.json"}
    train_sequence_model(
        "gru_mini_xception",
        model_args=args,
        train=train,
        feature_paths=[str(work / "feat.h5")],
        seed=0,
        **outs,
    )
    out["sequence"] = rss() - base
    preds = pd.read_csv(work / "g.csv")
    out["long_status"] = preds.loc[preds.clip_id == "c00", "status"].item()
    with h5py.File(work / "feat_video.h5") as f, h5py.File(work / "video.h5") as v:
        out["frames"] = [v["clips/long/faces"].shape[0], f["clips/long/features"].shape[0]]
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
