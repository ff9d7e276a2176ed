"""Where the face sits in a training crop, and crop boxes that put user media the same way.

FOMM animates well only when the source and driving frames frame the face like its
training clips did. The layout is described by the 68 landmarks' bounding box (brows to
chin, jaw side to jaw side), which is steadier than any detector box: in a training crop
of side S the landmark box's larger side is ``S / side`` and its centre lies ``centre_dy * S``
below the crop centre (hair and forehead above the brows fill the top). A user crop is the
square that reproduces that, so a wide shot, a close-up or a portrait all come out framed
like the clips. For video the box is computed every few frames, interpolated and smoothed
over time, so the crop does not jitter with the landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import square_box


@dataclass(frozen=True)
class FaceLayout:
    """Measured on the embedded set's 256 px training clips (411 frames; README, "Faces"): the
    landmark box's larger side is 0.548 (std 0.05) of the crop and its centre 0.121 (std
    0.04) of the crop below the crop centre."""

    side: float = 1 / 0.548  # crop side / landmark box side
    centre_dy: float = 0.121  # landmark box centre below the crop centre, fraction of the crop side


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) -> left, top, right, bottom of the points."""
    points = np.asarray(landmarks, np.float64)
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()])


def crop_square(landmarks: np.ndarray, layout: FaceLayout = FaceLayout()) -> np.ndarray:
    """The training-like crop as ``centre_x, centre_y, side`` (floats, not yet fitted to a frame)."""
    left, top, right, bottom = landmark_box(landmarks)
    side = max(right - left, bottom - top) * layout.side
    return np.array([(left + right) / 2, (top + bottom) / 2 - layout.centre_dy * side, side])


def fit(square: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """``centre_x, centre_y, side`` as an integer box inside a ``width x height`` frame."""
    return square_box(float(square[0]), float(square[1]), float(square[2]), width, height)


def smooth_squares(frames: np.ndarray, squares: np.ndarray, num_frames: int, window: int) -> np.ndarray:
    """Per-frame squares (num_frames, 3) from squares measured at ``frames``: linear
    interpolation between measurements (held at the ends), then a centred moving average
    of ``window`` frames so the crop glides instead of jittering."""
    frames = np.asarray(frames, np.float64)
    squares = np.asarray(squares, np.float64)
    every = np.arange(num_frames, dtype=np.float64)
    dense = np.stack([np.interp(every, frames, squares[:, k]) for k in range(3)], axis=1)
    if window > 1 and num_frames > 1:
        half = window // 2
        padded = np.pad(dense, ((half, half), (0, 0)), mode="edge")
        kernel = np.ones(2 * half + 1) / (2 * half + 1)
        dense = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(3)], axis=1)
    return dense
