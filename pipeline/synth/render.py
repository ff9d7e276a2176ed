"""One synthetic video from its plan: signals, frames, mp4, ground truth.

:func:`video_signals` computes everything except pixels (pose, blinks, audio, mouth,
landmarks, face boxes) and :func:`frames` draws the pixels; both depend only on the plan
and config, which is what makes the set reproducible frame by frame and sample by sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.ids import safe_join

from .config import FPS, SAMPLE_RATE, SynthConfig
from .face import LANDMARK_NAMES, FaceModel
from .identity import FaceStyle, make_background, make_style
from .motion import POSE_NAMES, blinks, head_pose
from .plan import IDENTITY_STREAM, VIDEO_STREAM, VideoPlan, rng_for
from .speech import speech_track
from .writer import EncodeSettings, encode_mp4

# sub-streams of a video's randomness, so changing one aspect leaves the others alone
BACKGROUND, POSE, BLINK, SPEECH = 1, 2, 3, 4


@dataclass
class VideoSignals:
    plan: VideoPlan
    style: FaceStyle
    background: np.ndarray  # (H, W, 3) uint8 BGR
    pose: np.ndarray  # (N, 5) float32
    blink: np.ndarray  # (N,) float32
    mouth_open: np.ndarray  # (N,) float32
    audio: np.ndarray  # (N * 882,) float32
    landmarks: np.ndarray  # (N, 5, 2) float32
    face_boxes: np.ndarray  # (N, 4) float64 left, top, right, bottom


@dataclass(frozen=True)
class VideoResult:
    plan: VideoPlan
    frames: int
    clip_boxes: tuple[tuple[int, int, int, int], ...]  # one per clip, integer pixels


def identity_style(seed: int, identity: int) -> FaceStyle:
    return make_style(rng_for(seed, IDENTITY_STREAM, identity), identity)


def video_signals(plan: VideoPlan, cfg: SynthConfig) -> VideoSignals:
    style = identity_style(plan.seed, plan.identity)
    n = plan.num_frames

    def stream(kind: int) -> np.random.Generator:
        return rng_for(plan.seed, VIDEO_STREAM, plan.index, kind)

    background = make_background(stream(BACKGROUND), cfg.width, cfg.height)
    pose = head_pose(stream(POSE), n, cfg.width, cfg.height)
    blink = blinks(stream(BLINK), n)
    audio, mouth = speech_track(stream(SPEECH), style, n, plan.clips)
    model = FaceModel(style, cfg.height)
    landmarks = np.stack([model.landmarks(pose[k], float(mouth[k])) for k in range(n)]).astype(np.float32)
    boxes = np.stack([model.face_box(pose[k]) for k in range(n)])
    return VideoSignals(plan, style, background, pose, blink, mouth, audio, landmarks, boxes)


def frames(signals: VideoSignals) -> Iterator[np.ndarray]:
    """The video's frames as uint8 BGR arrays (H, W, 3), drawn on demand."""
    model = FaceModel(signals.style, signals.background.shape[0])
    for k in range(signals.plan.num_frames):
        image = signals.background.copy()
        model.draw(image, signals.pose[k], float(signals.blink[k]), float(signals.mouth_open[k]))
        yield image


def clip_boxes(signals: VideoSignals, width: int, height: int) -> tuple[tuple[int, int, int, int], ...]:
    """Union of the face box over each clip's frames, as whole pixels inside the frame."""
    result = []
    for clip in signals.plan.clips:
        boxes = signals.face_boxes[clip.start : clip.end]
        left = int(np.clip(np.floor(boxes[:, 0].min()), 0, width))
        top = int(np.clip(np.floor(boxes[:, 1].min()), 0, height))
        right = int(np.clip(np.ceil(boxes[:, 2].max()), 0, width))
        bottom = int(np.clip(np.ceil(boxes[:, 3].max()), 0, height))
        result.append((left, top, right, bottom))
    return tuple(result)


def save_groundtruth(path: Path, signals: VideoSignals, width: int, height: int) -> None:
    np.savez_compressed(
        path,
        landmarks=signals.landmarks.astype(np.float32),
        landmark_names=np.array(LANDMARK_NAMES),
        mouth_open=signals.mouth_open.astype(np.float32),
        blink=signals.blink.astype(np.float32),
        pose=signals.pose.astype(np.float32),
        pose_names=np.array(POSE_NAMES),
        width=np.int32(width),
        height=np.int32(height),
        fps=np.int32(FPS),
    )


def render_video(plan: VideoPlan, cfg: SynthConfig, out_dir: Path, threads: int = 0) -> VideoResult:
    """Write ``videos/{id}.mp4`` and ``groundtruth/{id}.npz`` under ``out_dir``."""
    signals = video_signals(plan, cfg)
    settings = EncodeSettings(cfg.width, cfg.height, FPS, SAMPLE_RATE, cfg.crf, cfg.preset, threads)
    video_path = safe_join(out_dir / "videos", f"{plan.video_id}.mp4")
    count = encode_mp4(video_path, frames(signals), signals.audio, settings)
    gt_path = safe_join(out_dir / "groundtruth", f"{plan.video_id}.npz")
    save_groundtruth(gt_path, signals, cfg.width, cfg.height)
    return VideoResult(plan, count, clip_boxes(signals, cfg.width, cfg.height))
