"""Clip-level video networks: size, compute, throughput and memory, printed as a table.

Per model: parameters (millions, at the benchmark input), GFLOPs per clip (forward, counted by
``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per multiply-add), training (forward +
backward + AdamW step) and inference clips/s, and peak memory: on the CPU the growth of the peak
RSS of a fresh process per model from just before the model is built (weights, optimiser state,
activations), on a GPU ``torch.cuda.max_memory_allocated``. The CPU runs a small input (default 8 frames of
64 px; C3D needs 16 frames) with tiny transformer configs; ``--device cuda`` runs the models'
reference inputs with AMP.

    python bench/video_models.py [--models c3d_2layer,r2plus1d_18] [--frames 8] [--size 64]
                                 [--batch 2] [--steps 3] [--device cpu|cuda] [--reference]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from torch.utils.flop_counter import FlopCounterMode

from avfer.models.video.factory import build_video_model
from avfer.models.video.settings import VIDEO_DEFAULTS, VIDEO_MODEL_NAMES

# transformer configs small enough for a CPU benchmark (ViT-B at --reference)
SMALL_VIT = {"patch_size": 16, "hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3}
SMALL_VIT["intermediate_size"] = 768


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _shape(name: str, frames: int, size: int, reference: bool) -> tuple[int, int, dict]:
    d = VIDEO_DEFAULTS[name]
    if reference:
        return d.frames, d.input_size, {}
    args: dict = {}
    if name in ("timesformer", "vivit", "vivit_joint"):
        args = dict(SMALL_VIT, **({"tubelet_size": [2, 16, 16]} if name == "vivit_joint" else {}))
    if name in ("c3d", "c3d_dual"):
        frames = max(frames, 16)
    return frames, size, args


def bench_one(
    name: str, frames: int, size: int, args: dict, batch: int, steps: int, device_name: str, threads: int
) -> tuple[int, float, float, float, float]:
    """(parameters, GFLOPs per clip, train clips/s, inference clips/s, peak MB) of one model."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    rss0 = _peak_rss_mb()
    torch.manual_seed(0)
    net = build_video_model(name, 7, frames=frames, input_size=size, **args).to(device)
    params = sum(p.numel() for p in net.parameters())
    x = torch.randn(batch, 3, frames, size, size, device=device)
    y = torch.randint(0, 7, (batch,), device=device)
    amp = device.type == "cuda"
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x[:1])
    gflops = counter.get_total_flops() / 1e9
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def train_step():
        with torch.autocast(device.type, enabled=amp):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def infer_step():
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            net(x)

    rates = []
    for mode, step in (("train", train_step), ("eval", infer_step)):
        net.train(mode == "train")
        step()  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        rates.append(batch * steps / (time.perf_counter() - t0))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _peak_rss_mb() - rss0
    return params, gflops, rates[0], rates[1], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(VIDEO_MODEL_NAMES))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="each model's reference input size")
    a = parser.parse_args()
    device = torch.device(a.device)
    reference = a.reference or device.type == "cuda"
    rows = []
    for name in a.models.split(","):
        frames, size, args = _shape(name, a.frames, a.size, reference)
        # a fresh process per model: its peak RSS is the model's own
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            job = pool.submit(bench_one, name, frames, size, args, a.batch, a.steps, a.device, a.threads)
            rows.append((name, frames, size, *job.result()))
        print(".", end="", flush=True)
    mem = "peak GPU MB" if device.type == "cuda" else "peak RSS +MB"
    amp = ", AMP" if device.type == "cuda" else ""
    print(f"\n{device.type}, batch {a.batch}, {a.threads} threads{amp}")
    head = f"{'model':<14}{'clip':>12}{'params M':>10}{'GFLOPs':>9}"
    head += f"{'train c/s':>11}{'infer c/s':>11}{mem:>14}"
    print(head)
    print("-" * len(head))
    for name, frames, size, params, gflops, tr, inf, peak in rows:
        clip = f"{frames}x{size}x{size}"
        print(f"{name:<14}{clip:>12}{params / 1e6:>10.2f}{gflops:>9.2f}{tr:>11.2f}{inf:>11.2f}{peak:>14.0f}")


if __name__ == "__main__":
    main()
