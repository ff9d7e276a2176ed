"""Which image codec the shards should use: bytes per frame, PSNR, decode speed, random pairs/s.

Content (256x256 RGB, what ``fomm shard`` encodes):

* ``synthetic``: the embedded synthetic set's crops: ``fomm synth`` (2 identities) ->
  ``fomm metadata`` -> ``fomm crop``, frames decoded from the crop mp4s (the shard's input;
  PSNR is measured against these decoded frames, i.e. the lossless crop);
* ``portrait``: a real photo, /work/shared/faces/astronaut.png, as moving 256x256 crops of its
  face (``bench/scale.py``'s ``face_frames``), not video-compressed: more fine detail than a
  YouTube crop, so a harder case for lossy codecs.

Per codec: mean bytes per frame and mean PSNR (RGB, per frame) for each content, decode ms
per frame (``cv2.imdecode``), and random pairs/s of ``FramePairDataset`` (main process, no
augmentation, float conversion included) over shards of both contents, against the
PNG-folder reference of ``bench/loader.py`` (FOMM's layout: one Pillow PNG per frame,
listed and read per item) on the same frames. Prints one JSON object.

    .venv/bin/python bench/shard_codecs.py [--items 400] [--rounds 2] [--codecs jpeg95_444,png0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import FolderPairs, pairs_per_second, read_pillow, write_png_folder  # noqa: E402  (bench/loader.py)
from scale import face_frames  # noqa: E402  (bench/scale.py)

from fomm_core.clip_index import features_path  # noqa: E402
from fomm_core.clip_index_build import INDEX_SCHEMA, write_index  # noqa: E402
from fomm_core.data import FramePairDataset  # noqa: E402
from fomm_core.shard_file import SUFFIX, ShardFileWriter  # noqa: E402
from pipeline.shard.frames import iter_frames  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# name -> (extension, cv2.imencode params)
CODECS = {
    "png0": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]),
    "png1": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
    "png6": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 6]),
    "webp_lossless": (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    **{f"jpeg{q}_{s}": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                 cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if s == 444 else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
       for q in (85, 90, 95, 98) for s in (420, 444)},
    **{f"webp{q}": (".webp", [cv2.IMWRITE_WEBP_QUALITY, q]) for q in (85, 90, 95)},
    "avif90": (".avif", [cv2.IMWRITE_AVIF_QUALITY, 90]),
    "jpeg2000_x200": (".jp2", [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, 200]),
}
SYNTH = {"seed": 0, "identities": 2, "test_identities": 1, "videos_per_identity": 1, "clips_per_video": 2,
         "workers": 2}


def synthetic_crops(work: Path) -> list[list[np.ndarray]]:
    """Per clip, the BGR frames of ``fomm crop`` output for a small synthetic set."""
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump({"synth": SYNTH, "crop": {"workers": 2}}))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    steps = [
        ["synth", "--out", "synth", "--params", str(params)],
        ["metadata", "synth/vox-metadata.csv", "--out", "clips.parquet", "--rejects", "rejects.parquet",
         "--params", str(params)],
        ["crop", "clips.parquet", "--videos", "synth/videos", "--out", "clips", "--params", str(params)],
    ]
    for step in steps:
        result = subprocess.run([sys.executable, "-m", "pipeline", *step], cwd=work, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"fomm {step[0]} failed: {result.stderr[-1000:]}")
    return [list(iter_frames(mp4)) for mp4 in sorted((work / "clips").rglob("*.mp4"))]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def encode_all(clips: list[list[np.ndarray]], codec: str) -> list[list[bytes]]:
    ext, params = CODECS[codec]
    out = []
    for clip in clips:
        encoded = []
        for frame in clip:
            ok, buf = cv2.imencode(ext, frame, params)
            if not ok:
                raise SystemExit(f"{codec}: encode failed")
            encoded.append(buf.tobytes())
        out.append(encoded)
    return out


def quality(clips: list[list[np.ndarray]], encoded: list[list[bytes]]) -> dict:
    sizes, scores, decode = [], [], []
    for frames, data in zip(clips, encoded):
        for frame, buf in zip(frames, data):
            arr = np.frombuffer(buf, np.uint8)
            started = time.perf_counter()
            img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
            decode.append(time.perf_counter() - started)
            sizes.append(len(buf))
            scores.append(psnr(img, frame))
    return {"kb_per_frame": round(np.mean(sizes) / 1000, 1), "psnr_db": round(float(np.mean(scores)), 2),
            "psnr_db_min": round(float(np.min(scores)), 2), "decode_ms": round(float(np.median(decode)) * 1e3, 3)}


def write_shards(root: Path, encoded: list[list[bytes]], image_format: str) -> None:
    """One shard holding every clip (one person per clip), and its index."""
    (root / "shards").mkdir(parents=True)
    rows, start = [], 0
    name = f"shards/shard-00000{SUFFIX}"
    with open(root / name, "wb") as sink:
        writer = ShardFileWriter(sink)
        for k, clip in enumerate(encoded):
            for data in clip:
                writer.add(data)
            clip_id = f"id{k:05d}#vid{k:08d}#000000#{len(clip):06d}"
            rows.append({"clip_id": clip_id, "person_id": f"id{k:05d}", "video_id": f"vid{k:08d}",
                         "partition": "train", "shard": name, "row_start": start, "row_end": start + len(clip),
                         "num_frames": len(clip), "fps": 25.0, "image_format": image_format, "height": 256,
                         "width": 256, "features": features_path("train", clip_id), "has_groundtruth": False})
            start += len(clip)
        writer.finish("bench", rows)
    write_index(root, pa.Table.from_pylist(rows, schema=INDEX_SCHEMA))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best pairs/s kept")
    parser.add_argument("--codecs", default=",".join(CODECS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    codecs = args.codecs.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-codecs-") as tmp:
        root = Path(tmp)
        content = {
            "synthetic": synthetic_crops(root / "synth-work"),
            "portrait": [face_frames(60, seed=k) for k in range(3)],
        }
        everything = [clip for clips in content.values() for clip in clips]
        results: dict = {
            "benchmark": "shard_codecs", "cpu_count": os.cpu_count(),
            "frames": {name: sum(len(c) for c in clips) for name, clips in content.items()},
            "codecs": {},
        }
        datasets = {}
        for codec in codecs:
            entry = {name: quality(clips, encode_all(clips, codec)) for name, clips in content.items()}
            shard_root = root / f"shards-{codec}"
            write_shards(shard_root, encode_all(everything, codec), CODECS[codec][0].lstrip("."))
            datasets[codec] = FramePairDataset(shard_root, "train", augment=None, id_sampling=False)
            results["codecs"][codec] = entry
        for k, clip in enumerate(everything):
            write_png_folder(root / "folders" / f"clip{k:03d}", clip)
        datasets["png_folder_reference"] = FolderPairs(root / "folders", read_pillow)
        rates: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, dataset in datasets.items():
                rates[name] = max(rates.get(name, 0.0), pairs_per_second(dataset, 0, args.items))
        reference = rates.pop("png_folder_reference")
        results["png_folder_reference_pairs_per_s"] = round(reference, 1)
        for codec, rate in rates.items():
            results["codecs"][codec]["pairs_per_s"] = round(rate, 1)
            results["codecs"][codec]["vs_png_folders"] = round(rate / reference, 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
