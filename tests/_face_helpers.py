"""Synthetic faces at known places (the project's own renderer) for the face tests.

``draw`` paints identities at given centres and scales on a textured background;
``write_video`` encodes frames (with a speech-like tone so crop's audio check passes).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from pipeline.synth.face import FaceModel
from pipeline.synth.identity import make_background, make_style
from pipeline.synth.writer import EncodeSettings, encode_mp4

FIXTURES = Path(__file__).parent / "fixtures"
ASTRONAUT = FIXTURES / "astronaut.jpg"  # scikit-image's astronaut.png (public domain), as a 61 KB JPEG
RATE = 22050


@functools.lru_cache(maxsize=8)
def _background(seed: int, width: int, height: int) -> np.ndarray:
    return make_background(np.random.default_rng(1000 + seed), width, height)


@functools.lru_cache(maxsize=16)
def _model(identity: int, height: int) -> FaceModel:
    return FaceModel(make_style(np.random.default_rng(identity), identity), height)


def draw(width: int, height: int, faces: list[tuple[int, float, float, float]], seed: int = 0,
         mouth_open: float = 0.2) -> np.ndarray:
    """RGB frame with one head per (identity, centre x, centre y, scale)."""
    frame = _background(seed, width, height).copy()
    for identity, cx, cy, scale in faces:
        model = _model(identity, height)
        model.draw(frame, np.array([cx, cy, 0.0, scale, 0.0], np.float32), 0.0, mouth_open)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """H.264 mp4 with a 220 Hz tone as audio."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    seconds = len(frames) / fps
    t = np.arange(int(seconds * RATE)) / RATE
    audio = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    bgr = (cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames)
    encode_mp4(path, bgr, audio, EncodeSettings(width, height, fps, RATE, crf=18, preset="ultrafast", threads=1))
    return path
