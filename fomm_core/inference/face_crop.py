"""Training-like face crops of user images and videos (``fomm animate --crop-face``, ``fomm talk``).

The face backend (:mod:`fomm_core.faces`) finds the subject's 68 landmarks; the crop is the
square that frames them like the training clips (:class:`fomm_core.faces.layout.FaceLayout`).
A video is measured every ``stride`` frames and the crop is interpolated and smoothed over
time, so the face stays put in the output while the camera or the person moves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from ..errors import FommError
from ..faces import FaceBackend, load_backend
from ..faces.distances import describe
from ..faces.layout import FaceLayout, crop_square, fit, smooth_squares
from .video_io import probe_video, read_frames

Box = tuple[int, int, int, int]


def subject_square(backend: FaceBackend, image: np.ndarray, layout: FaceLayout = FaceLayout()) -> np.ndarray | None:
    """``centre_x, centre_y, side`` of the training-like crop of the image's subject, or None."""
    found = describe(backend, [image], descriptors=False)[0]
    return crop_square(found.landmarks[0], layout) if len(found) else None


def image_crop_box(image: np.ndarray, what: str, backend: FaceBackend | None = None,
                   layout: FaceLayout = FaceLayout()) -> Box:
    """The integer crop box of the image's face; FommError naming ``what`` when there is none."""
    square = subject_square(backend or load_backend(), image, layout)
    if square is None:
        raise FommError(f"{what}: no face found; use an image with a visible frontal face, or leave out the face crop")
    return fit(square, image.shape[1], image.shape[0])


@dataclass(frozen=True)
class VideoCrop:
    """Per-frame crop boxes of a video, and how many measured frames had a face."""

    boxes: np.ndarray  # (num_frames, 4) int left, top, right, bottom
    measured: int
    found: int


def video_crop_boxes(path: str | os.PathLike, backend: FaceBackend | None = None, stride: int = 5,
                     window: int = 9, layout: FaceLayout = FaceLayout(), start: float = 0.0,
                     duration: float | None = None) -> VideoCrop:
    """Smoothed per-frame crop boxes following the subject of ``path``; FommError when no
    measured frame has a face."""
    backend = backend or load_backend()
    info = probe_video(path)
    frames, squares = [], []
    count = measured = 0
    for batch in read_frames(path, batch=stride * 4, start=start, duration=duration):
        for k in range(len(batch)):
            index = count + k
            if index % stride:
                continue
            measured += 1
            square = subject_square(backend, batch[k], layout)
            if square is not None:
                frames.append(index)
                squares.append(square)
        count += len(batch)
    if not squares:
        raise FommError(f"{path}: no face found in any of {measured} frames checked; "
                        "use a video with a visible frontal face, or leave out the face crop")
    dense = smooth_squares(np.array(frames), np.array(squares), count, window)
    boxes = np.array([fit(s, info.width, info.height) for s in dense], np.int64)
    return VideoCrop(boxes, measured, len(squares))


def read_cropped_batches(path: str | os.PathLike, boxes: np.ndarray, size: int, batch: int = 8, start: float = 0.0,
                         duration: float | None = None) -> Iterator[np.ndarray]:
    """``path``'s frames cropped to their own box (the last box for any frame past the end
    of ``boxes``) and resized to size x size (area filter)."""
    index = 0
    for frames in read_frames(path, batch=batch, start=start, duration=duration):
        out = np.empty((len(frames), size, size, 3), np.uint8)
        for k, frame in enumerate(frames):
            left, top, right, bottom = boxes[min(index, len(boxes) - 1)]
            out[k] = cv2.resize(frame[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)
            index += 1
        yield out
