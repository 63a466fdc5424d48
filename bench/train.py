"""Visual CNN training throughput: the lazy HDF5 data path vs a JPEG-per-frame folder.

Builds a face cache of ``--frames`` aligned 112 px crops (demo faces), and the same frames as
JPEG files in an ImageFolder tree (how the reference pipeline fed its CNNs: torchvision
``ImageFolder`` + per-image PIL transforms + ``DataLoader`` workers). Then times, in frames/s:

- indexing the cache once (frames are read, decompressed and resized per batch),
- one epoch of the data path alone (no model): HDF5 batches (what the CPU does when the
  augmentation runs on the GPU), HDF5 batches + augmentation, and the JPEG loader,
- training (forward + backward + step) fed by each path, on the CPU and, when
  ``torch.cuda.is_available()``, on the GPU (HDF5 batches are augmented on the GPU).

"cpu f/s" divides by the CPU seconds of the process and its loader workers (load-independent).
The target: the data path alone is >= 5x faster than training, so it is never the bottleneck.

    python bench/train.py [--frames 2000] [--model mini_xception] [--size 48] [--chans 1]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from avfer.data.frames import FrameStore, batch_loader
from avfer.data.transforms import FaceTransform
from avfer.demo.faces import FACE_GROUPS, Pose, expression_weights, render
from avfer.io import h5_writer, write_clip
from avfer.models.face import FaceModel

GROUP_OF = {"Happy": "smile", "Angry": "frown", "Surprise": "surprised", "Neutral": "neutral"}


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_data(folder: Path, frames: int, clip_len: int = 50) -> tuple[Path, Path]:
    """A face cache (``faces.h5``) and the same frames as ``jpeg/<Emotion>/<clip>_<t>.jpg``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    cache, jpeg = folder / "faces.h5", folder / "jpeg"
    with h5_writer(cache, "faces", creator="bench") as f:
        for c in range(-(-frames // clip_len)):
            label = list(GROUP_OF)[c % len(GROUP_OF)]
            n = min(clip_len, frames - c * clip_len)
            w = expression_weights(GROUP_OF[label], np.linspace(0, 1, n), np.zeros(len(FACE_GROUPS)))
            faces = np.empty((n, 112, 112, 3), np.uint8)
            for t in range(n):
                pose = Pose(56 + rng.normal(0, 2), 60 + rng.normal(0, 2), 86, rng.normal(0, 3))
                faces[t] = np.clip(render(pose, w[t], 112) + rng.normal(0, 3, (112, 112, 3)), 0, 255)
                out = jpeg / label / f"c{c:04d}_{t:03d}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(faces[t]).save(out, quality=90)
            data = {
                "faces": faces,
                "frame_index": np.arange(n, dtype=np.int32),
                "timestamp": np.arange(n) / 25,
                "box": np.zeros((n, 4), np.float32),
                "landmarks": np.zeros((n, 5, 2), np.float32),
                "prob": np.ones(n, np.float32),
                "has_face": np.ones(n, bool),
            }
            write_clip(f, f"c{c:04d}", data, split="train", label=label)
    return cache, jpeg


def jpeg_loader(root: Path, size: int, chans: int, batch_size: int, workers: int) -> DataLoader:
    """torchvision ImageFolder + the usual per-image PIL transforms (the reference data path)."""
    from torchvision import datasets, transforms

    tf = [transforms.Grayscale(chans)] if chans == 1 else []
    tf += [
        transforms.Resize(size),
        transforms.RandomHorizontalFlip(),
        transforms.RandomAffine(5, translate=(0.04, 0.04), scale=(0.95, 1.05)),
        transforms.ColorJitter(0.1, 0.1),
        transforms.ToTensor(),
        transforms.Normalize([0.5] * chans, [0.5] * chans),
    ]
    ds = datasets.ImageFolder(str(root), transform=transforms.Compose(tf))
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True)


def timed(fn: Callable[..., int], *args: object) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second) of ``fn(*args)`` (returns its frame count)."""
    w, c = time.perf_counter(), _cpu()
    n = fn(*args)
    return n / (time.perf_counter() - w), n / max(_cpu() - c, 1e-9)


def consume(batches: Iterable, transform: FaceTransform | None, device: torch.device) -> int:
    n = 0
    for x, _ in batches:
        x = x.to(device, non_blocking=True)
        if transform is not None:
            x = transform(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        n += len(x)
    return n


def train_steps(model: torch.nn.Module, batches: Iterable, device: torch.device, amp: bool) -> int:
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    model.train()
    n = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--model", default="mini_xception")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--chans", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="JPEG DataLoader workers")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    size, chans, bs = args.size, args.chans, args.batch_size
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="avfer-bench-") as td:
        t0 = time.perf_counter()
        cache, jpeg = make_data(Path(td), args.frames)
        print(f"made {args.frames} frames (cache + JPEGs) in {time.perf_counter() - t0:.0f} s")
        store: list[FrameStore] = []
        rows.append(("index cache (frames read per batch)", "cpu", *timed(_load, store, cache, size, chans)))
        s = store[0]
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        for dev in devices:
            tf = FaceTransform(size, chans, "light").to(dev).train()
            hdf5 = batch_loader(
                s.images,
                s.targets,
                s.clip,
                batch_size=bs,
                shuffle=True,
                drop_last=True,
                pin_memory=dev.type == "cuda",
            )
            jpg = jpeg_loader(jpeg, size, chans, bs, args.workers)
            rows.append(
                (
                    "data only: hdf5 batches (read + copy to device)",
                    dev.type,
                    *timed(consume, hdf5, None, dev),
                )
            )
            rows.append(
                (
                    "data only: hdf5 batches + tensor augment",
                    dev.type,
                    *timed(consume, hdf5, tf, dev),
                )
            )
            rows.append(
                (
                    f"data only: jpeg ImageFolder, {args.workers} workers",
                    dev.type,
                    *timed(consume, jpg, None, dev),
                )
            )
            amp = dev.type == "cuda"
            for name, loader in (("hdf5", hdf5), ("jpeg", jpg)):
                torch.manual_seed(0)
                aug = "light" if name == "hdf5" else "none"  # JPEG batches come augmented
                model = FaceModel(args.model, input_size=size, in_chans=chans, augment=aug).to(dev)
                train_steps(model, _take(loader, 2), dev, amp)  # warm-up
                label = f"train {args.model} {size}px x{chans}, {name} path"
                rows.append((label, dev.type, *timed(train_steps, model, loader, dev, amp)))
    print(f"\n{'what':58s} {'device':6s} {'frames/s':>10s} {'cpu f/s':>10s}")
    for what, dev, wall, cpu in rows:
        print(f"{what:58s} {dev:6s} {wall:10.0f} {cpu:10.0f}")


def _load(out: list[FrameStore], cache: Path, size: int, chans: int) -> int:
    out.append(FrameStore.from_caches([cache], size=size, chans=chans))
    return len(out[0].images)


def _take(loader: Iterable, n: int) -> list:
    batches = []
    for b in loader:
        batches.append(b)
        if len(batches) == n:
            break
    return batches


if __name__ == "__main__":
    main()
