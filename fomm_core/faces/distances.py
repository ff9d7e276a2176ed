"""AKD and AED, the FOMM paper's face metrics, and the detection rate they depend on.

AKD (average keypoint distance): the mean distance in pixels between the 68 landmarks found
on the generated frame and on the real one, over frames where a face is found in both.
AED (average euclidean distance): the mean L2 distance between the identity descriptors of
the generated and the real frame (dlib's 128-D ResNet descriptor: two photos of one person
are typically < 0.6 apart), over the same frames. Both are 0 for identical frames.
The detection rates say how many frames these means rest on: a model whose output has no
recognisable face scores no AKD at all, which must not read as a good AKD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .backend import FaceBackend, FaceFrame, keep, largest_face

# iBUG 68-point indices
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner lip
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)


def describe(backend: FaceBackend, frames: Sequence[np.ndarray], descriptors: bool = True) -> list[FaceFrame]:
    """Per frame the subject's face only (see :func:`largest_face`), with landmarks (and descriptors)."""
    found = [keep(f, largest_face(f)) for f in backend.detect(frames)]
    found = backend.landmarks(frames, found)
    return backend.descriptors(frames, found) if descriptors else found


@dataclass
class FaceDistances:
    """Running AKD/AED over (generated, real) frame pairs, each side given as :func:`describe` output."""

    pairs: int = 0
    real_found: int = 0
    generated_found: int = 0
    both: int = 0
    akd_sum: float = 0.0
    aed_sum: float = 0.0

    def add(self, generated: Sequence[FaceFrame], real: Sequence[FaceFrame]) -> None:
        for fake, true in zip(generated, real, strict=True):
            self.pairs += 1
            self.real_found += len(true) > 0
            self.generated_found += len(fake) > 0
            if not (len(fake) and len(true)):
                continue
            self.both += 1
            self.akd_sum += float(np.linalg.norm(fake.landmarks[0] - true.landmarks[0], axis=-1).mean())
            if fake.descriptors is not None and true.descriptors is not None:
                self.aed_sum += float(np.linalg.norm(fake.descriptors[0] - true.descriptors[0]))

    def results(self, prefix: str = "") -> dict[str, float | None]:
        """``akd``, ``aed`` (None without any frame with a face on both sides) and rates."""
        rate = (lambda n: n / self.pairs) if self.pairs else (lambda n: None)
        return {
            f"{prefix}akd": self.akd_sum / self.both if self.both else None,
            f"{prefix}aed": self.aed_sum / self.both if self.both else None,
            f"{prefix}face_detection_rate": rate(self.real_found),
            f"{prefix}face_pairs_rate": rate(self.both),
            f"{prefix}generated_face_rate": rate(self.generated_found),
        }


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over the distance between the eye centres, per face: (..., 68, 2) -> (...).

    Scale free, so it compares across face sizes; 0 for a closed mouth, ~0.3-0.5 wide open.
    """
    landmarks = np.asarray(landmarks, np.float64)
    gap = np.mean([np.linalg.norm(landmarks[..., a, :] - landmarks[..., b, :], axis=-1) for a, b in INNER_LIP_PAIRS],
                  axis=0)
    eyes = np.linalg.norm(landmarks[..., LEFT_EYE, :].mean(-2) - landmarks[..., RIGHT_EYE, :].mean(-2), axis=-1)
    return gap / np.maximum(eyes, 1e-6)
