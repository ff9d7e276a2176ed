"""Box arithmetic on ``left, top, right, bottom`` float arrays (a box or (N, 4) boxes)."""

from __future__ import annotations

import numpy as np


def area(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, np.float64)
    return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(box[..., 3] - box[..., 1], 0, None)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union, broadcasting over leading axes; 0 when both are empty."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    left = np.maximum(a[..., 0], b[..., 0])
    top = np.maximum(a[..., 1], b[..., 1])
    right = np.minimum(a[..., 2], b[..., 2])
    bottom = np.minimum(a[..., 3], b[..., 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def union_box(boxes: np.ndarray) -> np.ndarray:
    """The smallest box holding all of (N, 4) ``boxes``."""
    boxes = np.asarray(boxes, np.float64)
    return np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


def enlarge(box: np.ndarray, increase: float) -> np.ndarray:
    """The box grown by ``increase`` of its width and height (half on each side), same centre."""
    left, top, right, bottom = np.asarray(box, np.float64)
    dx, dy = (right - left) * increase / 2, (bottom - top) * increase / 2
    return np.array([left - dx, top - dy, right + dx, bottom + dy])


def square_box(centre_x: float, centre_y: float, side: float, width: int, height: int) -> tuple[int, int, int, int]:
    """An integer square of ``side`` around the centre, shifted (not shrunk) to stay inside a
    ``width x height`` frame when it fits, else the largest square that does."""
    side = int(round(min(side, width, height)))
    left = int(round(centre_x - side / 2))
    top = int(round(centre_y - side / 2))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, left + side, top + side
