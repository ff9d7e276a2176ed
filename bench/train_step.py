"""Seconds per FOMM training step at vox-256 size on this machine's CPU, and FLOP efficiency.

vox-256 model (ModelConfig defaults), LossConfig defaults with a random perceptual backbone
(no download), 256x256 frames, torch.set_num_threads(2). Times one full step (generator +
keypoint detector forward/backward with perceptual and equivariance losses, Adam updates)
at batch 1 and 2, and the same with the GAN on (generator_gan 1: discriminator forward in
the generator step plus a discriminator update). FLOPs come from FlopCounterMode over one
step; the peaks are timed 2048^3 fp32 and bf16 matmuls (``--amp bf16`` is bf16 autocast,
which uses the CPU's native bf16 dot products where it has them). Prints one JSON object.

Usage: .venv/bin/python bench/train_step.py [--repeats 3] [--batches 1 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fomm_core.losses import LossConfig  # noqa: E402
from fomm_core.model_config import ModelConfig  # noqa: E402
from fomm_core.training import TrainConfig  # noqa: E402
from fomm_core.training.trainer import Trainer  # noqa: E402


class BenchTrainer(Trainer):
    """A Trainer without a data set: the benchmark feeds random frames."""

    def _build_data(self) -> None:
        self.steps_per_epoch = 1
        self.shards_sha256 = "none"


def matmul_peak(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def bench(batch: int, gan: float, repeats: int, channels_last: bool, amp: str = "none") -> dict:
    losses = LossConfig(perceptual_backbone="random", generator_gan=gan)
    config = TrainConfig(batch_size=batch, device="cpu", num_workers=0, channels_last=channels_last, amp=amp)
    trainer = BenchTrainer("unused", "unused", ModelConfig(), losses, config, log=lambda *a, **k: None)
    for module in (trainer.generator_step, trainer.discriminator_step):
        if module is not None:
            module.train()
    gen = torch.Generator().manual_seed(0)
    batch_data = {"source": torch.rand(batch, 3, 256, 256, generator=gen),
                  "driving": torch.rand(batch, 3, 256, 256, generator=gen)}
    trainer.train_step([batch_data])  # warm-up: allocator, oneDNN primitive caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train_step([batch_data])
        times.append(time.perf_counter() - start)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_step([batch_data])
    flops = counter.get_total_flops()
    best = min(times)
    return {"batch": batch, "gan": gan > 0, "amp": amp, "seconds_per_step": round(sorted(times)[len(times) // 2], 3),
            "best_seconds_per_step": round(best, 3), "gflops_per_step": round(flops / 1e9, 1),
            "gflops_per_second": round(flops / best / 1e9, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-gan", action="store_true", help="skip the GAN variant")
    parser.add_argument("--amp", nargs="+", default=["none", "bf16"], choices=["none", "bf16"],
                        help="fp32 (none) and/or bf16 autocast on the CPU")
    parser.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peaks = {"none": matmul_peak(), "bf16": matmul_peak(dtype=torch.bfloat16)}
    results = []
    for gan in ([0.0] if args.no_gan else [0.0, 1.0]):
        for batch in args.batches:
          for amp in args.amp:
            entry = bench(batch, gan, args.repeats, not args.contiguous, amp)
            entry["fraction_of_matmul_peak"] = round(entry["gflops_per_second"] * 1e9 / peaks[amp], 3)
            results.append(entry)
    print(json.dumps({
        "threads": args.threads, "frame_size": 256, "model": "vox-256", "perceptual_backbone": "random",
        "channels_last": not args.contiguous, "matmul_peak_gflops": {"fp32": round(peaks["none"] / 1e9, 1), "bf16": round(peaks["bf16"] / 1e9, 1)},
        "reference_seconds_per_step": {"batch1": 5.9, "batch2": 8.6}, "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
