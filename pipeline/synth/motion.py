"""Head pose trajectories and eye blinks for one video.

Pose components are sums of a few slow sinusoids with random frequencies and phases, so
motion is smooth (no jumps between frames) and bounded, and the face stays in frame.
"""

from __future__ import annotations

import numpy as np

from .config import FPS

POSE_NAMES = ("tx", "ty", "roll", "scale", "yaw")
# eyelid closure for the frames of one blink: fast close, short hold, slower opening
BLINK_PROFILE = np.array([0.45, 1.0, 1.0, 0.65, 0.3], dtype=np.float32)


def _wander(rng: np.random.Generator, t: np.ndarray, fmin: float, fmax: float, waves: int = 3) -> np.ndarray:
    """A smooth signal in [-1, 1]: normalised sum of sinusoids."""
    amps = rng.uniform(0.3, 1.0, waves)
    amps /= amps.sum()
    freqs = rng.uniform(fmin, fmax, waves)
    phases = rng.uniform(0, 2 * np.pi, waves)
    return (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(axis=0)


def head_pose(rng: np.random.Generator, num_frames: int, width: int, height: int) -> np.ndarray:
    """(N, 5) float32 ``tx, ty, roll, scale, yaw`` per frame; tx, ty the face centre in pixels."""
    t = np.arange(num_frames, dtype=np.float64) / FPS
    cx = width * (0.5 + rng.uniform(-0.08, 0.08))
    cy = height * (0.47 + rng.uniform(-0.02, 0.02))
    base_scale = rng.uniform(0.92, 1.08)
    yaw_bias = rng.uniform(-0.3, 0.3)
    pose = np.empty((num_frames, 5), dtype=np.float64)
    pose[:, 0] = cx + width * 0.06 * _wander(rng, t, 0.07, 0.35)
    pose[:, 1] = cy + height * 0.04 * _wander(rng, t, 0.1, 0.5)
    pose[:, 2] = 0.12 * _wander(rng, t, 0.1, 0.45)
    pose[:, 3] = base_scale * (1 + 0.07 * _wander(rng, t, 0.05, 0.25))
    pose[:, 4] = np.clip(yaw_bias + 0.6 * _wander(rng, t, 0.08, 0.4), -1.0, 1.0)
    return pose.astype(np.float32)


def blinks(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """(N,) float32 eyelid closure 0 open .. 1 closed, a blink every 1.5-4.5 s."""
    closure = np.zeros(num_frames, dtype=np.float32)
    frame = int(rng.uniform(0.3, 2.5) * FPS)
    while frame < num_frames:
        stop = min(num_frames, frame + len(BLINK_PROFILE))
        closure[frame:stop] = BLINK_PROFILE[: stop - frame]
        frame += int(rng.uniform(1.5, 4.5) * FPS)
    return closure
