"""Benchmark animation throughput: the paper's vox-256 model (random weights) at 256x256.

Measures steady-state animated frames per second (keypoints of the driving frames plus the
generator; source keypoints and encoder features computed once) with ``Animator`` at
batch 1 and 8 in float32 and, where the CPU has native bf16 (AVX512-BF16/AMX), under
bfloat16 autocast (``--precision auto`` of fomm animate picks it there); and the reference way (FOMM's demo: ``generator(source, kp_driving,
kp_source)`` one frame at a time, source re-encoded every frame, default memory format)
for comparison. torch.set_num_threads(2). Prints one JSON object.

    .venv/bin/python bench/animate.py [--frames 16] [--warmup 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fomm_core.inference.animate import Animator  # noqa: E402
from fomm_core.inference.device import resolve_precision  # noqa: E402
from fomm_core.model_config import vox256_model_config  # noqa: E402
from fomm_core.models import build_models  # noqa: E402


def fps_animator(kp, gen, source, driving, batch: int, warmup: int, dtype=torch.float32) -> float:
    animator = Animator(kp, gen, source, relative=True, dtype=dtype)
    for _ in range(warmup):
        animator(driving[:batch])
    start = time.perf_counter()
    done = 0
    for i in range(0, len(driving), batch):
        done += len(animator(driving[i : i + batch]))
    return done / (time.perf_counter() - start)


def fps_reference(kp, gen, source, driving, warmup: int) -> float:
    kp = kp.to(memory_format=torch.contiguous_format)
    gen = gen.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        kp_source = kp(source)
        for _ in range(warmup):
            gen(source, kp_driving=kp(driving[:1]), kp_source=kp_source)
        start = time.perf_counter()
        for i in range(len(driving)):
            gen(source, kp_driving=kp(driving[i : i + 1]), kp_source=kp_source)
    return len(driving) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="timed driving frames per setting")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    kp, gen, _ = build_models(vox256_model_config())
    kp.eval()
    gen.eval()
    source = torch.rand(1, 3, 256, 256)
    driving = torch.rand(args.frames, 3, 256, 256)
    bf16 = resolve_precision("auto", torch.device("cpu")) == torch.bfloat16
    result = {"model": "vox-256 (random weights)", "size": 256, "threads": 2, "frames": args.frames}
    if not args.skip_reference:
        result["reference_fps"] = round(fps_reference(kp, gen, source, driving, args.warmup), 3)
    for batch in (1, 8):
        result[f"fps_batch{batch}"] = round(fps_animator(kp, gen, source, driving, batch, args.warmup), 3)
    if bf16:
        for batch in (1, 8):
            result[f"fps_batch{batch}_bf16"] = round(
                fps_animator(kp, gen, source, driving, batch, args.warmup, torch.bfloat16), 3)
    result["reference_s_per_frame_stated"] = 1.3
    best = max(v for k, v in result.items() if k.startswith("fps_batch"))
    result["speedup_vs_stated_reference"] = round(best * 1.3, 2)
    if "reference_fps" in result:
        result["speedup_vs_measured_reference"] = round(best / result["reference_fps"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
