"""Benchmark `fomm shard`: throughput at 1 and 2 workers, CPU per frame, peak memory at 1x and 4x.

Builds a crop-stage-like folder of 256x256 25 fps clips (ffmpeg test pattern with noise,
H.264 like the crop stage writes) and 16 kHz wavs, then runs the real stage in a child
process and reads from ``os.wait4`` its CPU time (the stage, its workers and their ffmpeg
processes) and its peak RSS (the largest of those processes). Wall-clock frames/s depends on
what else the machine runs; CPU seconds per frame does not, and gives the extrapolation to
a machine with more cores (``frames * cpu_s_per_frame / cores``, the stage being
CPU-bound with one encoding process per core). Peak RSS must stay flat as the data grows
4x. Prints one JSON object.

    .venv/bin/python bench/shard.py [--clips 8] [--frames 75]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.io import wavfile

REPO = Path(__file__).resolve().parents[1]
# ~4M frames (VoxCeleb1); 1.1M clips x ~150 frames (VoxCeleb2: 6 s average utterances at 25 fps)
VOXCELEB_FRAMES = {"voxceleb1": 4_000_000, "voxceleb2": 1_100_000 * 150}


def make_clip(path: Path, frames: int, seed: int, size: int = 256) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    vf = f"hue=h={(seed * 47) % 360},noise=alls=8:allf=t:all_seed={seed + 1}"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={size}x{size}:rate=25", "-frames:v", str(frames), "-vf", vf,
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)


def make_crop_dir(root: Path, clips: int, frames: int, unique: int = 4,
                  src_dir: Path | None = None) -> Path:
    """``root/clips`` with ``clips`` clips; mp4s cycle through ``unique`` encoded ones."""
    out = root / "clips"
    sources = []
    for k in range(unique):
        src = (src_dir or root / "src") / f"{k}.mp4"
        if not src.exists():
            make_clip(src, frames, k)
        sources.append(src)
    rows = []
    rng = np.random.default_rng(0)
    for k in range(clips):
        person = f"id{k // 3:05d}"
        video = f"vid{k:08d}"
        clip_id = f"{person}#{video}#000000#{frames:06d}"
        partition = "train"
        (out / partition).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[k % unique], out / partition / f"{clip_id}.mp4")
        samples = (rng.standard_normal(frames * 640) * 3000).astype(np.int16)
        wavfile.write(out / partition / f"{clip_id}.wav", 16000, samples)
        rows.append({
            "clip_id": clip_id, "video_id": video, "person_id": person, "partition": partition,
            "start": 0, "end": frames, "status": "ok", "reason": "", "num_frames": frames,
            "fps": 25.0, "video": f"{partition}/{clip_id}.mp4", "audio": f"{partition}/{clip_id}.wav",
            "crop_left": 0.0, "crop_top": 0.0, "crop_right": 256.0, "crop_bottom": 256.0,
            "src_width": 256.0, "src_height": 256.0,
        })
    pd.DataFrame(rows).to_parquet(out / "manifest.parquet", index=False)
    return out


def run_stage(cwd: Path, clips: Path, out: Path, shard_params: dict) -> dict:
    """Run `fomm shard` in a child; wall time and the child's peak RSS (ffmpeg excluded)."""
    params = cwd / "bench-params.yaml"
    params.write_text(yaml.safe_dump({"shard": shard_params}))
    cmd = [sys.executable, "-m", "pipeline", "shard", str(clips), "--out", str(out), "--params", str(params)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stdout = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"fomm shard failed: {stdout.decode(errors='replace')}")
    index = pd.read_parquet(out / "index.parquet")
    frames = int(index["num_frames"].sum())
    shard_bytes = sum(p.stat().st_size for p in (out / "shards").iterdir())
    out_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "clips": len(index), "frames": frames,
        "shards": int(index["shard"].nunique()), "output_mb": round(out_bytes / 1e6, 2),
        "shard_kb_per_frame": round(shard_bytes / frames / 1e3, 1),
        "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1),
        "cpu_s": round(cpu, 2), "cpu_ms_per_frame": round(cpu / frames * 1e3, 3),
        "output_mb_per_s": round(out_bytes / 1e6 / seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=8, help="clips at 1x")
    parser.add_argument("--frames", type=int, default=75, help="frames per clip")
    parser.add_argument("--image-format", default="jpeg")
    args = parser.parse_args()
    shard_params = {"frames_per_shard": 512, "image_format": args.image_format}
    with tempfile.TemporaryDirectory(prefix="bench-shard-") as tmp:
        root = Path(tmp)
        results = {}
        for scale, workers in ((1, 1), (1, 2), (4, 2)):
            work = root / f"x{scale}"
            if not (work / "clips").exists():
                make_crop_dir(work, args.clips * scale, args.frames, src_dir=root / "src")
            results[f"x{scale}_workers{workers}"] = run_stage(work, work / "clips", work / "shards",
                                                              {**shard_params, "workers": workers})
            shutil.rmtree(work / "shards")
    one, two, four = results["x1_workers1"], results["x1_workers2"], results["x4_workers2"]
    growth = four["peak_rss_mb"] / two["peak_rss_mb"]
    # CPU per frame once running (start-up of the stage and its workers cancels out).
    marginal = (four["cpu_s"] - two["cpu_s"]) / (four["frames"] - two["frames"])
    print(json.dumps({
        "benchmark": "shard", "params": shard_params, "frame_size": "256x256", **results,
        "speedup_2_workers": round(two["frames_per_s"] / one["frames_per_s"], 2),
        "marginal_cpu_ms_per_frame": round(marginal * 1e3, 3),
        "extrapolated_frames_per_s_16_cores": round(16 / marginal),
        "extrapolated_hours_16_cores": {name: round(frames * marginal / 16 / 3600, 2)
                                        for name, frames in VOXCELEB_FRAMES.items()},
        "peak_rss_growth_4x": round(growth, 3), "rss_flat": growth < 1.15,
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
