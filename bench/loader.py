"""Benchmark random frame-pair loading from the shards against FOMM's per-clip PNG folders.

Reference (what FOMM does, kept faithful so the ratio is honest):

* folders are written the way FOMM's VoxCeleb preprocessing writes them: one PNG per frame
  through imageio, i.e. Pillow with imageio's PNG default ``compress_level=9``;
* per item, ``FramesDataset`` lists the clip folder (``os.listdir``, every item), picks two
  frames, reads each with ``skimage.io.imread`` (imageio -> Pillow, then ``np.asarray``),
  ``img_as_float32`` (uint8 -> float32 / 255), ``np.array(..., dtype='float32')`` (a copy)
  and ``.transpose((2, 0, 1))`` (a view). skimage/imageio are not installed here, so the
  same calls are made on Pillow and numpy directly.

``reference_cv2`` is the same loader with ``cv2.imread`` instead (faster than FOMM; shown
for comparison only). Ours is ``FramePairDataset`` (no augmentation, float conversion
included) over ``fomm shard`` output with several image settings; with 2 workers it is
also run with ``as_float=False`` (uint8 through the worker queue, ``to_float`` in the main
process, so conversion is still counted). Frames: 256x256 test pattern with noise (H.264),
which compresses worse than faces. Prints one JSON object.

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
from typing import Iterable

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shard import make_crop_dir, run_stage  # noqa: E402  (bench/shard.py)

from fomm_core.data import FramePairDataset, ShardStore, item_rng, seed_worker, to_float  # noqa: E402
from pipeline.shard.frames import iter_frames  # noqa: E402

CONFIGS = {
    "png0": {"image_format": "png", "png_compression": 0},
    "png1": {"image_format": "png", "png_compression": 1},
    "png6": {"image_format": "png", "png_compression": 6},
    "jpeg95_444": {"image_format": "jpeg", "jpeg_quality": 95, "jpeg_subsampling": 444},  # the default
    "jpeg95_420": {"image_format": "jpeg", "jpeg_quality": 95, "jpeg_subsampling": 420},
    "jpeg90_444": {"image_format": "jpeg", "jpeg_quality": 90, "jpeg_subsampling": 444},
}
DEFAULT_CONFIGS = "png0,jpeg95_444"


def read_pillow(path: str) -> np.ndarray:
    """skimage.io.imread -> imageio -> Pillow: decoded RGB uint8 (H, W, 3)."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def read_cv2(path: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


class FolderPairs(Dataset):
    """FOMM's ``FramesDataset`` for a folder of PNGs per clip, listed on every item."""

    def __init__(self, root: Path, reader=read_pillow):
        self.root = root
        self.videos = sorted(os.listdir(root))
        self.reader = reader

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, idx: int) -> dict:
        rng = item_rng()
        path = os.path.join(self.root, self.videos[idx])
        frames = os.listdir(path)
        i, j = sorted(int(k) for k in rng.choice(len(frames), size=2, replace=False))
        out = []
        for k in (i, j):
            img = self.reader(os.path.join(path, frames[k]))
            img = img.astype(np.float32) / np.float32(255.0)  # img_as_float32 for uint8
            out.append(torch.from_numpy(np.array(img, dtype="float32").transpose((2, 0, 1))))
        return {"source": out[0], "driving": out[1], "clip_id": self.videos[idx], "frames": (i, j)}


def write_png_folder(folder: Path, frames: Iterable[np.ndarray]) -> int:
    """One clip in FOMM's layout as imageio writes it (Pillow PNGs, compress_level 9); bytes written."""
    folder.mkdir(parents=True)
    total = 0
    for k, frame in enumerate(frames):
        name = folder / f"{k:07d}.png"
        Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1])).save(name, compress_level=9)
        total += name.stat().st_size
    return total


def write_folders(clips_dir: Path, out: Path) -> float:
    """Per-clip PNG folders of the crop mp4s; total MB."""
    return sum(write_png_folder(out / mp4.stem, iter_frames(mp4))
               for mp4 in sorted((clips_dir / "train").glob("*.mp4"))) / 1e6


def pairs_per_second(dataset: Dataset, workers: int, items: int, repeats: int = 1,
                     uint8: bool = False) -> float:
    """Best of ``repeats`` runs; worker start-up excluded (the clock starts at the first item)."""
    best = 0.0
    for r in range(repeats):
        torch.manual_seed(r)
        sampler = RandomSampler(dataset, replacement=True, num_samples=items + 1)
        loader = DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                            worker_init_fn=seed_worker if workers else None)
        it = iter(loader)
        first = next(it)
        assert first["source"].dtype == (torch.uint8 if uint8 else torch.float32)
        started = time.perf_counter()
        n = 0
        for item in it:
            if uint8:  # the float conversion still counts, now in the main process
                to_float(item["source"]), to_float(item["driving"])
            n += 1
        best = max(best, n / (time.perf_counter() - started))
    return round(best, 1)


def decode_ms(store: ShardStore, samples: int = 100) -> float:
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
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"of {','.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict = {"benchmark": "loader", "frame_size": "256x256", "clips": args.clips,
                     "frames_per_clip": args.frames, "items": args.items, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = Path(tmp)
        clips = make_crop_dir(root, args.clips, args.frames)
        folders = root / "ref-folders"
        ref_mb = write_folders(clips, folders)
        cases: dict[str, tuple[Dataset, bool]] = {
            "reference": (FolderPairs(folders, read_pillow), False),
            "reference_cv2": (FolderPairs(folders, read_cv2), False),
        }
        shards: dict[str, dict] = {}
        for name in args.configs.split(","):
            out = root / f"shards-{name}"
            params = {"frames_per_shard": 4096, "workers": 2, **CONFIGS[name]}
            built = run_stage(root, clips, out, params)
            shards[name] = {"params": params, "mb": built["output_mb"],
                            "build_frames_per_s": built["frames_per_s"],
                            "decode_ms_per_image": decode_ms(ShardStore(out))}
            cases[name] = (FramePairDataset(out, "train", augment=None, id_sampling=False), False)
            cases[name + "/uint8"] = (FramePairDataset(out, "train", augment=None, id_sampling=False,
                                                      as_float=False), True)
        # Rounds interleave every case so load from other processes hits them alike.
        rates: dict[tuple[str, int], float] = {}
        for _ in range(args.rounds):
            for workers in (0, 2):
                for case, (ds, uint8) in cases.items():
                    if uint8 and workers == 0:
                        continue
                    rate = pairs_per_second(ds, workers, args.items * max(1, workers), 1, uint8)
                    rates[case, workers] = max(rates.get((case, workers), 0.0), rate)
        for name in ("reference", "reference_cv2"):
            results[name] = {"mb": round(ref_mb, 1), "pairs_per_s_0_workers": rates[name, 0],
                             "pairs_per_s_2_workers": rates[name, 2]}
        base0, base2 = rates["reference", 0], rates["reference", 2]
        for name, entry in shards.items():
            r0, r2, r2u = rates[name, 0], rates[name, 2], rates[name + "/uint8", 2]
            entry.update({
                "pairs_per_s_0_workers": r0, "pairs_per_s_2_workers": r2,
                "pairs_per_s_2_workers_uint8": r2u,
                "speedup_0_workers": round(r0 / base0, 2),
                "speedup_2_workers": round(r2 / base2, 2),
                "speedup_2_workers_uint8": round(r2u / base2, 2),
            })
        results["shards"] = shards
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
