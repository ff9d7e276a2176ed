"""Face tracks of one long video for ``fomm find-crops``: time ranges and training-like crop boxes.

The same recipe as the tubes stage (detection every ``stride`` frames, tracking, IoU
chunking, filters); each kept tube's crop box is the union of the per-frame
training-like squares around its landmarks (:mod:`fomm_core.faces.layout`), so
``fomm animate --crop-box`` frames the face like ``--crop-face`` would, without jitter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomm_core.faces import load_backend
from fomm_core.faces.boxes import iou
from fomm_core.faces.layout import crop_square
from fomm_core.faces.tubes import find_tubes
from fomm_core.inference.video_io import probe_video

from .config import TubesConfig
from .frames import FPS, detection_size, sampled_frames


@dataclass(frozen=True)
class FoundCrop:
    start: int  # frames at 25 fps
    end: int
    box: tuple[int, int, int, int]  # crop box in the video's pixels
    face_side: float

    @property
    def seconds(self) -> tuple[float, float]:
        return self.start / FPS, self.end / FPS


def find_crops(video: Path, config: TubesConfig) -> tuple[list[FoundCrop], int]:
    """Kept tubes of ``video`` as crops, and how many frames were sampled."""
    info = probe_video(video)
    backend = load_backend(config.detector)
    _, det_h = detection_size(info.width, info.height, config.detect_height)
    back = info.height / det_h
    total = info.num_frames if info.num_frames else 10**9
    frames_at, detections, scores, squares = [], [], [], []
    for offset, frame in sampled_frames(video, 0.0, int(total * FPS / max(info.fps, 1e-3)) + FPS, config.stride,
                                        info.width, info.height, config.detect_height):
        found = backend.detect_one(frame)
        marked = backend.landmarks([frame], [found])[0] if len(found) else found
        frames_at.append(offset)
        detections.append(found.boxes * back)
        scores.append(found.scores)
        squares.append([crop_square(points * back) for points in (marked.landmarks if len(found) else [])])
    end = frames_at[-1] + config.stride if frames_at else 0
    crops = []
    for tube in find_tubes(frames_at, detections, scores, end, config):
        if tube.reason is not None:
            continue
        boxes = []
        for k, frame in enumerate(frames_at):
            if not tube.start <= frame < tube.end or not len(detections[k]):
                continue
            best = int(np.argmax(iou(detections[k], tube.face_box[None, :])))
            cx, cy, side = squares[k][best]
            boxes.append([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
        union = np.array(boxes)
        left, top = union[:, 0].min(), union[:, 1].min()
        right, bottom = union[:, 2].max(), union[:, 3].max()
        side = min(max(right - left, bottom - top), info.width, info.height)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        x0 = int(round(min(max(cx - side / 2, 0), info.width - side)))
        y0 = int(round(min(max(cy - side / 2, 0), info.height - side)))
        face = float(min(tube.face_box[2] - tube.face_box[0], tube.face_box[3] - tube.face_box[1]))
        crops.append(FoundCrop(tube.start, tube.end, (x0, y0, x0 + int(side), y0 + int(side)), face))
    return crops, len(frames_at)
