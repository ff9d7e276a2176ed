"""Crop-stage-like inputs for the shard and data tests: real mp4s, wavs, a manifest, ground truth."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.io import wavfile

REPO = Path(__file__).resolve().parents[1]
GT_WIDTH, GT_HEIGHT = 640, 360  # the synth video size the ground truth is in
SRC_SCALE = 2  # the "decoded source" was twice the ground-truth size
SIZE = 64  # crop size used by the tests (the real stage writes 256)


@dataclass(frozen=True)
class FakeClip:
    person: str
    video: str
    start: int
    frames: int
    partition: str
    status: str = "ok"
    audio: bool = True
    wav_rate: int = 16000
    wav_short: int = 0  # audio this many video frames shorter than the video

    @property
    def clip_id(self) -> str:
        return f"{self.person}#{self.video}#{self.start:06d}#{self.start + self.frames:06d}"


CLIPS = (
    FakeClip("id00001", "vidAAAAAAAA", 0, 20, "train"),
    FakeClip("id00001", "vidAAAAAAAA", 30, 17, "train"),
    FakeClip("id00001", "vidBBBBBBBB", 5, 12, "train", audio=False),
    FakeClip("id00002", "vidCCCCCCCC", 10, 25, "train", wav_rate=22050, wav_short=1),  # within the slack
    FakeClip("id00003", "vidDDDDDDDD", 0, 9, "test"),
    FakeClip("id00004", "vidEEEEEEEE", 3, 14, "test"),
    FakeClip("id00002", "vidCCCCCCCC", 60, 10, "train", status="failed"),
)
CROP_BOX = (100.0, 40.0, 420.0, 360.0)  # left, top, right, bottom in source (1280x720) pixels


def make_mp4(path: Path, frames: int, hue: int, size: int = SIZE) -> None:
    """A lossless 25 fps H.264 clip whose frames all differ (moving test pattern)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
           "-i", f"testsrc2=size={size}x{size}:rate=25", "-frames:v", str(frames),
           "-vf", f"hue=h={hue}", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
           "-pix_fmt", "yuv444p", str(path)]
    subprocess.run(cmd, check=True)


def make_wav(path: Path, frames: int, freq: float, rate: int = 16000) -> None:
    t = np.arange(frames * rate // 25) / rate
    samples = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    wavfile.write(path, rate, samples)


def ground_truth(video: str, n: int = 120) -> dict:
    rng = np.random.default_rng(list(video.encode()))
    landmarks = rng.uniform([60, 30], [200, 170], size=(n, 5, 2)).astype(np.float32)
    pose = np.stack([rng.uniform(60, 200, n), rng.uniform(30, 170, n), rng.uniform(-0.2, 0.2, n),
                     rng.uniform(0.8, 1.2, n), rng.uniform(-1, 1, n)], axis=1).astype(np.float32)
    return {
        "landmarks": landmarks,
        "mouth_open": rng.uniform(0, 1, n).astype(np.float32),
        "blink": rng.uniform(0, 1, n).astype(np.float32),
        "pose": pose,
        "landmark_names": np.array(["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]),
        "pose_names": np.array(["tx", "ty", "roll", "scale", "yaw"]),
        "width": np.int32(GT_WIDTH), "height": np.int32(GT_HEIGHT), "fps": np.float32(25.0),
    }


def make_crop_dir(root: Path, clips=CLIPS, size: int = SIZE, with_gt: bool = True,
                  media: bool = True) -> Path:
    """``root/clips`` (manifest + mp4/wav) and, with ground truth, ``root/groundtruth``.

    ``media=False`` writes only the manifest (for tests that fail before reading clips).
    """
    clips_dir = root / "clips"
    rows = []
    for k, clip in enumerate(clips):
        video_rel = f"{clip.partition}/{clip.clip_id}.mp4"
        audio_rel = f"{clip.partition}/{clip.clip_id}.wav" if clip.audio else ""
        (clips_dir / clip.partition).mkdir(parents=True, exist_ok=True)
        if clip.status == "ok" and media:
            make_mp4(clips_dir / video_rel, clip.frames, hue=37 * k, size=size)
            if clip.audio:
                make_wav(clips_dir / audio_rel, clip.frames - clip.wav_short, freq=300.0 + 200 * k,
                         rate=clip.wav_rate)
        left, top, right, bottom = CROP_BOX
        rows.append({
            "clip_id": clip.clip_id, "video_id": clip.video, "person_id": clip.person,
            "partition": clip.partition, "start": clip.start, "end": clip.start + clip.frames,
            "status": clip.status, "reason": "" if clip.status == "ok" else "no face",
            "num_frames": clip.frames if clip.status == "ok" else 0, "fps": 25.0,
            "video": video_rel if clip.status == "ok" else "", "audio": audio_rel,
            "crop_left": left, "crop_top": top, "crop_right": right, "crop_bottom": bottom,
            "src_width": GT_WIDTH * SRC_SCALE, "src_height": GT_HEIGHT * SRC_SCALE,
        })
    pd.DataFrame(rows).to_parquet(clips_dir / "manifest.parquet", index=False)
    if with_gt:
        gt_dir = root / "groundtruth"
        gt_dir.mkdir(parents=True, exist_ok=True)
        for video in sorted({c.video for c in clips}):
            np.savez(gt_dir / f"{video}.npz", **ground_truth(video))
    return clips_dir


def write_params(cwd: Path, **shard) -> Path:
    path = cwd / "params.yaml"
    path.write_text(yaml.safe_dump({"shard": shard}))
    return path


def run_shard(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pipeline", "shard", *args], cwd=cwd,
                          capture_output=True, text=True, env=env)


def decode_mp4_rgb(path: Path) -> np.ndarray:
    """All frames of an mp4 as (N, H, W, 3) RGB via the ffmpeg CLI (independent of the stage)."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True)
    w, h = (int(v) for v in probe.stdout.strip().split(","))
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3).copy()
