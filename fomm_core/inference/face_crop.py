"""Automatic face crop for ``fomm animate --crop-face`` (OpenCV's Haar cascade).

FOMM works on tight square face crops like its training data; a wide shot would animate
poorly. The detector is OpenCV's bundled ``haarcascade_frontalface_default.xml``. NOTE:
opencv-python-headless 5.x ships neither the cascade files nor ``cv2.CascadeClassifier``;
4.x wheels do (``cv2/data/haarcascade_frontalface_default.xml``). Without them
``--crop-face`` fails with a message saying so, and everything else still works.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import FommError

CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path() -> Path | None:
    """The bundled frontal-face cascade, or None when this OpenCV has none."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder:
        return None
    path = Path(folder) / CASCADE
    return path if path.is_file() else None


def load_face_detector():
    path = cascade_path()
    if path is None or not hasattr(cv2, "CascadeClassifier"):
        raise FommError(
            f"--crop-face needs OpenCV's bundled {CASCADE}, which opencv-python-headless "
            f"{cv2.__version__} does not ship; install opencv-python-headless<5 or crop the face yourself"
        )
    detector = cv2.CascadeClassifier(os.fspath(path))
    if detector.empty():
        raise FommError(f"{path}: OpenCV could not load the face cascade; reinstall opencv-python-headless")
    return detector


def detect_face(image: np.ndarray, detector=None) -> tuple[int, int, int, int] | None:
    """The largest face in an RGB uint8 image as (left, top, right, bottom), or None."""
    detector = detector if detector is not None else load_face_detector()
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    min_side = max(24, min(gray.shape) // 10)
    faces = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
    return x, y, x + w, y + h


def square_crop_box(face: tuple[float, float, float, float], width: int, height: int,
                    increase: float = 0.6) -> tuple[int, int, int, int]:
    """A square box around ``face``, its side enlarged by ``increase`` (hair, chin, some
    background, like VoxCeleb crops), shifted (not shrunk) to stay inside the frame when
    it fits, else the largest square that does."""
    left, top, right, bottom = face
    cx, cy = (left + right) / 2, (top + bottom) / 2
    side = max(right - left, bottom - top) * (1 + increase)
    side = int(round(min(side, width, height)))
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    x0 = min(max(x0, 0), width - side)
    y0 = min(max(y0, 0), height - side)
    return x0, y0, x0 + side, y0 + side


def face_crop_box(image: np.ndarray, what: str, increase: float = 0.6, detector=None) -> tuple[int, int, int, int]:
    """The square crop box of the largest face in ``image``; FommError naming ``what`` if none."""
    face = detect_face(image, detector)
    if face is None:
        raise FommError(f"{what}: no face found for --crop-face; crop it yourself or leave out --crop-face")
    return square_crop_box(face, image.shape[1], image.shape[0], increase)
