"""The face backend interface: what evaluation, tubes and user crops need from a detector.

Every method takes a *batch* of RGB uint8 frames (a list, sizes may differ) so a backend
that runs on an accelerator can batch; dlib loops. Boxes are float ``left, top, right,
bottom`` in the frame's pixels, landmarks the iBUG 68-point layout (jaw 0-16, brows 17-26,
nose 27-35, eyes 36-47, mouth 48-67), descriptors identity embeddings where the
L2 distance between two faces is small for the same person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

NUM_LANDMARKS = 68


@dataclass(frozen=True)
class FaceFrame:
    """What one frame holds: N faces, their boxes and scores, optionally landmarks/descriptors."""

    boxes: np.ndarray  # (N, 4) float64 left, top, right, bottom
    scores: np.ndarray  # (N,) float64, detector confidence (higher is surer)
    landmarks: np.ndarray | None = None  # (N, 68, 2) float64 x, y
    descriptors: np.ndarray | None = None  # (N, D) float64

    def __len__(self) -> int:
        return len(self.boxes)


def empty_frame() -> FaceFrame:
    return FaceFrame(np.zeros((0, 4)), np.zeros(0))


class FaceBackend(Protocol):
    """Detector + landmarks + descriptor. ``name`` says which (recorded with the metrics)."""

    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[FaceFrame]:
        """Boxes and scores of every face in every frame."""

    def landmarks(self, frames: Sequence[np.ndarray], found: Sequence[FaceFrame]) -> list[FaceFrame]:
        """``found`` with (N, 68, 2) landmarks added for each of its boxes."""

    def descriptors(self, frames: Sequence[np.ndarray], found: Sequence[FaceFrame]) -> list[FaceFrame]:
        """``found`` (with landmarks) with (N, D) identity descriptors added."""


def largest_face(found: FaceFrame) -> int | None:
    """The subject of a talking-head frame: the surest face among those at least half as
    large as the largest (a weak false positive the size of the face does not win), or None."""
    if not len(found):
        return None
    areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
    candidates = np.flatnonzero(areas >= 0.5 * areas.max())
    return int(candidates[np.argmax(found.scores[candidates])])


def keep(found: FaceFrame, index: int | None) -> FaceFrame:
    """Only face ``index`` (nothing when None)."""
    if index is None:
        return empty_frame()
    pick = slice(index, index + 1)
    return FaceFrame(found.boxes[pick], found.scores[pick],
                     None if found.landmarks is None else found.landmarks[pick],
                     None if found.descriptors is None else found.descriptors[pick])
