"""Benchmark random frame-pair loading from the shards against per-clip PNG folders.

The reference is FOMM's frame-folder loader: per item, list the clip's folder, pick two
frames, ``cv2.imread`` both PNGs and convert to float32. The shard loader is
``FramePairDataset`` (no augmentation, float conversion included). Both run with 0 and 2
DataLoader workers on the same frames (256x256, ~100 KB PNGs); shards are built with
several image settings so the default can be picked. Prints one JSON object.

    .venv/bin/python bench/loader.py [--clips 12] [--frames 100] [--items 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shard import make_crop_dir, run_stage  # noqa: E402  (bench/shard.py)

from fomm_core.data import FramePairDataset, ShardStore, item_rng, seed_worker  # noqa: E402
from pipeline.shard.frames import iter_frames  # noqa: E402

CONFIGS = {
    "png1": {"image_format": "png", "png_compression": 1},
    "png0": {"image_format": "png", "png_compression": 0},
    "png6": {"image_format": "png", "png_compression": 6},
    "jpeg95": {"image_format": "jpeg", "jpeg_quality": 95},
    "jpeg90": {"image_format": "jpeg", "jpeg_quality": 90},
}


class FolderPairs(Dataset):
    """FOMM's way: one folder of PNGs per clip, listed on every item."""

    def __init__(self, root: Path):
        self.root = root
        self.videos = sorted(os.listdir(root))

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, idx: int) -> dict:
        rng = item_rng()
        path = os.path.join(self.root, self.videos[idx])
        frames = sorted(os.listdir(path))
        i, j = sorted(int(k) for k in rng.choice(len(frames), size=2, replace=False))
        out = []
        for k in (i, j):
            img = cv2.cvtColor(cv2.imread(os.path.join(path, frames[k])), cv2.COLOR_BGR2RGB)
            out.append(torch.from_numpy(np.ascontiguousarray((img.astype(np.float32) / 255.0).transpose(2, 0, 1))))
        return {"source": out[0], "driving": out[1], "clip_id": self.videos[idx], "frames": (i, j)}


def write_folders(clips_dir: Path, out: Path, png_compression: int | None) -> float:
    """Per-clip PNG folders of the decoded clip frames; returns their total MB."""
    params = [] if png_compression is None else [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    total = 0
    for mp4 in sorted((clips_dir / "train").glob("*.mp4")):
        folder = out / mp4.stem
        folder.mkdir(parents=True)
        for k, frame in enumerate(iter_frames(mp4)):
            name = folder / f"{k:07d}.png"
            cv2.imwrite(str(name), frame, params)
            total += name.stat().st_size
    return total / 1e6


def pairs_per_second(dataset: Dataset, workers: int, items: int, repeats: int = 2) -> float:
    """Best of ``repeats`` runs; worker start-up excluded (the clock starts at the first item)."""
    best = 0.0
    for r in range(repeats):
        torch.manual_seed(r)
        sampler = RandomSampler(dataset, replacement=True, num_samples=items + 1)
        loader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                            worker_init_fn=seed_worker if workers else None)
        it = iter(loader)
        first = next(it)
        assert first["source"].dtype == torch.float32
        started = time.perf_counter()
        n = sum(1 for _ in it)
        best = max(best, n / (time.perf_counter() - started))
    return round(best, 1)


def decode_ms(store: ShardStore, samples: int = 200) -> float:
    clip = store.clips[0]
    frames = list(range(min(samples, clip.num_frames)))
    data = [bytes(b) for b in store.read_images(clip, frames)]
    started = time.perf_counter()
    for buf in data:
        cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    return round((time.perf_counter() - started) / len(data) * 1e3, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--items", type=int, default=300, help="pairs timed per measurement")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    results: dict = {"benchmark": "loader", "frame_size": "256x256", "clips": args.clips,
                     "frames_per_clip": args.frames, "items": args.items, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = Path(tmp)
        clips = make_crop_dir(root, args.clips, args.frames)
        reference = {}
        for name, level in (("png_cv2_default", None), ("png_level6", 6)):
            folders = root / f"ref-{name}"
            mb = write_folders(clips, folders, level)
            ds = FolderPairs(folders)
            reference[name] = {"mb": round(mb, 1),
                               "pairs_per_s_0_workers": pairs_per_second(ds, 0, args.items),
                               "pairs_per_s_2_workers": pairs_per_second(ds, 2, 2 * args.items)}
        results["reference_folders"] = reference
        base0 = reference["png_cv2_default"]["pairs_per_s_0_workers"]
        base2 = reference["png_cv2_default"]["pairs_per_s_2_workers"]
        shards = {}
        for name in args.configs.split(","):
            out = root / f"shards-{name}"
            params = {"row_group_frames": 8, "max_shard_mb": 64.0, **CONFIGS[name]}
            built = run_stage(root, clips, out, params)
            ds = FramePairDataset(out, "train", augment=None, id_sampling=False)
            r0 = pairs_per_second(ds, 0, args.items)
            r2 = pairs_per_second(ds, 2, 2 * args.items)
            shards[name] = {
                "params": params, "mb": built["output_mb"], "build_frames_per_s": built["frames_per_s"],
                "decode_ms_per_image": decode_ms(ShardStore(out)),
                "pairs_per_s_0_workers": r0, "pairs_per_s_2_workers": r2,
                "speedup_vs_reference_0_workers": round(r0 / base0, 2),
                "speedup_vs_reference_2_workers": round(r2 / base2, 2),
            }
        results["shards"] = shards
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
