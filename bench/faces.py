"""Benchmark: face detection speed (dlib HOG and CNN) and the tubes stage's cost per video-minute.

Frames are this project's synthetic heads (detectable by dlib): a 256x256 crop (a training
clip frame) and a 1280x720 frame (a VoxCeleb download). Detection is timed per frame on
one process; landmarks and descriptors per face. The tubes stage runs its own code path
(``run_tubes`` on an own-video clips table) on a 720p video with a moving head, with one
worker and with all cores, and reports seconds of compute per minute of video.

    .venv/bin/python bench/faces.py [--seconds 20] [--repeats 20] [--cnn-repeats 2]

Prints one JSON object.
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
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _face_helpers import draw, write_video  # noqa: E402
from fomm_core.faces import DlibBackend  # noqa: E402
from pipeline.ids import make_clip_id  # noqa: E402
from pipeline.metadata.tables import CLIPS_SCHEMA  # noqa: E402
from pipeline.tubes.config import TubesConfig  # noqa: E402
from pipeline.tubes.run import run_tubes  # noqa: E402

VIDEO_ID = "ownBench001"
PERSON = "id80000"


def frames_per_second(backend: DlibBackend, frame: np.ndarray, repeats: int) -> float:
    backend.detect_one(frame)  # load the model
    started = time.perf_counter()
    for _ in range(repeats):
        assert len(backend.detect_one(frame)) >= 1
    return repeats / (time.perf_counter() - started)


def per_face_ms(backend: DlibBackend, frame: np.ndarray, repeats: int) -> tuple[float, float]:
    found = backend.detect([frame])
    backend.descriptors([frame], backend.landmarks([frame], found))
    started = time.perf_counter()
    for _ in range(repeats):
        marked = backend.landmarks([frame], found)
    middle = time.perf_counter()
    for _ in range(repeats):
        backend.descriptors([frame], marked)
    done = time.perf_counter()
    return 1000 * (middle - started) / repeats, 1000 * (done - middle) / repeats


def tubes_cost(seconds: float, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frames = int(seconds * 25)
        video = [cv2.resize(draw(640, 360, [(3, 320 + 150 * np.sin(k / 40), 180, 1.0 + 0.3 * np.sin(k / 60))]),
                            (1280, 720), interpolation=cv2.INTER_LINEAR) for k in range(frames)]
        write_video(root / "in" / "take.mp4", video)
        (root / "videos").mkdir()
        os.link(root / "in" / "take.mp4", root / "videos" / f"{VIDEO_ID}.mp4")
        row = {"clip_id": make_clip_id(PERSON, VIDEO_ID, 0, frames), "video_id": VIDEO_ID, "person_id": PERSON,
               "partition": "train", "start": 0, "end": frames, "fps": 25.0, "left": 0.0, "top": 0.0,
               "right": 1280.0, "bottom": 720.0, "width": 1280, "height": 720,
               "url": (root / "in" / "take.mp4").as_uri(), "source": "in/take.mp4", "box_clipped": False}
        pd.DataFrame([row])[CLIPS_SCHEMA.names].to_parquet(root / "clips.parquet")
        results = {}
        for label, count in (("1_worker", 1), ("all_cores", workers)):
            out = root / f"out_{label}"
            started = time.perf_counter()
            report = run_tubes(root / "clips.parquet", root / "videos", root / "in", out,
                               TubesConfig(workers=count, min_frames=32, min_size=80))
            elapsed = time.perf_counter() - started
            results[label] = {"seconds": round(elapsed, 2), "seconds_per_video_minute": round(elapsed / (seconds / 60), 1),
                              "tubes": report.kept, "rejected": report.rejected, "frames_detected": report.sampled}
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the 720p video for the tubes stage")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cnn-repeats", type=int, default=2)
    args = parser.parse_args()
    big = cv2.resize(draw(640, 360, [(3, 320, 180, 1.0)]), (1280, 720), interpolation=cv2.INTER_LINEAR)
    crop = cv2.resize(big[90:630, 370:910], (256, 256), interpolation=cv2.INTER_AREA)
    hog, cnn = DlibBackend("hog"), DlibBackend("cnn")
    landmarks_ms, descriptor_ms = per_face_ms(hog, crop, args.repeats)
    result = {
        "hog_fps_256": round(frames_per_second(hog, crop, args.repeats), 1),
        "hog_fps_720p": round(frames_per_second(hog, big, max(2, args.repeats // 4)), 2),
        "hog_fps_720p_detected_at_360": round(frames_per_second(hog, cv2.resize(big, (640, 360),
                                                                                interpolation=cv2.INTER_AREA),
                                                                 args.repeats), 1),
        "cnn_fps_256": round(frames_per_second(cnn, crop, args.cnn_repeats), 2),
        "landmarks_ms_per_face": round(landmarks_ms, 2),
        "descriptor_ms_per_face": round(descriptor_ms, 2),
        "tubes_720p": tubes_cost(args.seconds, os.cpu_count() or 1),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
