"""Benchmark: the crop stage against the widely used frame-by-frame reference preprocessing.

Generates a 720p 25 fps source with audio and back-to-back clips, runs the stage's own
code path (``run_crop``: read the table, crop, merge the manifest; default params) with
one worker and with ``workers: 0`` (one per core), then a baseline
written after the reference VoxCeleb preprocessing: decode every frame with OpenCV,
crop, resize with a scikit-image style anti-aliased resize in float (Gaussian
pre-filter with sigma (scale - 1) / 2, then bilinear resampling) and save PNG frames.

    .venv/bin/python bench/crop.py [--seconds 24] [--clip-frames 100] [--baseline-frames 100]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.crop.geometry import Box, PixelBox, crop_box, scale_box  # noqa: E402
from pipeline.crop.config import CropConfig  # noqa: E402
from pipeline.crop.run import run_crop  # noqa: E402
from pipeline.ids import make_clip_id  # noqa: E402

VIDEO_ID = "BenchVideo0"
WIDTH, HEIGHT, FPS = 1280, 720, 25
FACE = (480.0, 120.0, 760.0, 460.0)  # a face-sized box in 1280x720 pixels
KEYINT = 100  # frames between keyframes (4 s): seeks decode from the previous one
PNG_LEVEL = 6  # zlib level of Pillow's PNG writer, which the reference saves frames with


def make_source(path: Path, seconds: int) -> None:
    """A moving, detailed 720p picture at a typical YouTube bitrate, with a tone."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=44100:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-g", str(KEYINT),
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)],
        check=True,
    )


def clips_table(path: Path, seconds: int, clip_frames: int) -> list[tuple[int, int]]:
    spans = [(s, s + clip_frames) for s in range(0, seconds * FPS - clip_frames + 1, clip_frames)]
    rows = [{
        "clip_id": make_clip_id("id10001", VIDEO_ID, s, e), "video_id": VIDEO_ID, "person_id": "id10001",
        "partition": "train", "start": s, "end": e, "fps": 25.0, "left": FACE[0], "top": FACE[1],
        "right": FACE[2], "bottom": FACE[3], "width": float(WIDTH), "height": float(HEIGHT),
        "url": "", "source": "bench", "box_clipped": False,
    } for s, e in spans]
    pd.DataFrame(rows).to_parquet(path, index=False)
    return spans


def skimage_style_resize(image: np.ndarray, size: int) -> np.ndarray:
    """What ``skimage.transform.resize(image, (size, size), anti_aliasing=True)`` computes."""
    data = image.astype(np.float64) / 255.0
    factors = (data.shape[0] / size, data.shape[1] / size)
    sigma = [max(0.0, (f - 1.0) / 2.0) for f in factors] + [0.0]
    data = ndimage.gaussian_filter(data, sigma, mode="mirror")
    zoom = (size / data.shape[0], size / data.shape[1], 1.0)
    data = ndimage.zoom(data, zoom, order=1, mode="grid-mirror", grid_mode=True)
    return np.clip(np.round(data * 255.0), 0, 255).astype(np.uint8)  # img_as_ubyte


def baseline(source: Path, spans: list[tuple[int, int]], box: PixelBox, size: int, out: Path,
             max_frames: int) -> tuple[int, float]:
    """Reference-style: read frames in order, crop + resize + PNG for frames inside clips."""
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(source))
    done, index = 0, 0
    last = spans[-1][1]
    while done < max_frames and index < last:
        ok, frame = capture.read()
        if not ok:
            break
        for s, e in spans:
            if s <= index < e:
                crop = frame[box.y:box.y + box.h, box.x:box.x + box.w, ::-1]
                resized = skimage_style_resize(crop, size)
                folder = out / f"{s:06d}"
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{index - s:07d}.png"), resized[:, :, ::-1],
                            [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
                done += 1
        index += 1
    capture.release()
    return done, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=24, help="length of the generated source")
    parser.add_argument("--clip-frames", type=int, default=100, help="frames per clip")
    parser.add_argument("--baseline-frames", type=int, default=150, help="frames the slow baseline processes")
    parser.add_argument("--repeats", type=int, default=3, help="crop runs; the median is reported")
    parser.add_argument("--skip-baseline", action="store_true", help="only the stage's own figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-crop-") as tmp_name:
        tmp = Path(tmp_name)
        videos = tmp / "videos"
        videos.mkdir()
        source = videos / f"{VIDEO_ID}.mp4"
        make_source(source, args.seconds)
        spans = clips_table(tmp / "clips.parquet", args.seconds, args.clip_frames)

        figures = {}
        for workers in (1, 0):
            config = CropConfig(workers=workers)
            runs = []
            for repeat in range(args.repeats):
                out = tmp / f"clips-w{workers}-{repeat}"
                started = time.perf_counter()
                report = run_crop(tmp / "clips.parquet", videos, out, config).report
                runs.append(time.perf_counter() - started)
                if report.ok != len(spans) or report.already_done:
                    raise SystemExit(f"bench: crop failed: {report.summary_line()}")
            seconds = statistics.median(runs)
            figures[f"workers_{workers}"] = {
                "workers": config.worker_count(), "clips_per_s": round(len(spans) / seconds, 2),
                "frames_per_s": round(report.frames / seconds, 1), "seconds": round(seconds, 2),
                "runs_s": [round(r, 2) for r in runs]}
        config = CropConfig()
        box = crop_box(scale_box(Box(*FACE), WIDTH, HEIGHT, WIDTH, HEIGHT), WIDTH, HEIGHT,
                       config.square, config.increase_area)
        if not args.skip_baseline:
            base_frames, base_seconds = baseline(source, spans, box, config.size, tmp / "baseline",
                                                 args.baseline_frames)

    result = {
        "crop": {**figures["workers_0"], "crf": config.crf, "preset": config.preset},
        "crop_one_worker": figures["workers_1"],
        "source": f"{WIDTH}x{HEIGHT} {FPS} fps H.264 2.5 Mbit/s keyint {KEYINT} + AAC, {args.seconds} s; "
                  f"{len(spans)} clips of {args.clip_frames} frames, crop {box.w}x{box.h} -> {config.size}",
        "frames": report.frames,
    }
    if not args.skip_baseline:
        base_fps = base_frames / base_seconds
        result["baseline"] = {"frames_per_s": round(base_fps, 2), "frames": base_frames,
                              "seconds": round(base_seconds, 2)}
        result["speedup"] = round(figures["workers_0"]["frames_per_s"] / base_fps, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
