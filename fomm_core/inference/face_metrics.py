"""AKD and AED, the FOMM paper's keypoint and identity distances, over pluggable backends.

AKD: mean distance in pixels between facial landmarks found on the generated and on the
real frame by an external 2-D landmark detector. The supported backend is the
``face-alignment`` package (FAN, Bulat & Tzimiropoulos 2017, 68 points), as in the paper.

AED: mean L2 distance between identity embeddings of the generated and the real frame.
The supported backend is ``facenet-pytorch``'s InceptionResnetV1 trained on VGGFace2 (the
paper used a person re-identification network; any face identity embedding serves).

Both download their weights on first use, so they are optional extras: when one is not
installed, or its weights cannot be had, the metric is reported as skipped with the reason.
A frame where the detector finds no face on either side is counted in ``akd_missed``
instead of the mean (the paper reports the missing fraction the same way).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

# uint8 (B, H, W, 3) RGB frames -> per frame an (N, 2) array of landmark pixels, or None (no face)
LandmarkBackend = Callable[[np.ndarray], list[Optional[np.ndarray]]]
# uint8 (B, H, W, 3) RGB frames -> (B, D) identity embeddings
IdentityBackend = Callable[[np.ndarray], np.ndarray]


@dataclass
class FaceDistances:
    """Running AKD/AED sums over frame pairs (generated vs real)."""

    akd_sum: float = 0.0
    akd_frames: int = 0
    akd_missed: int = 0
    aed_sum: float = 0.0
    aed_frames: int = 0

    def add_landmarks(self, generated: list[Optional[np.ndarray]], real: list[Optional[np.ndarray]]) -> None:
        for fake, true in zip(generated, real, strict=True):
            if fake is None or true is None or np.shape(fake) != np.shape(true):
                self.akd_missed += 1
                continue
            self.akd_sum += float(np.linalg.norm(np.asarray(fake, np.float64) - np.asarray(true, np.float64),
                                                 axis=-1).mean())
            self.akd_frames += 1

    def add_embeddings(self, generated: np.ndarray, real: np.ndarray) -> None:
        generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
        if generated.shape != real.shape:
            raise ValueError(f"embedding shapes differ: {generated.shape} vs {real.shape}")
        self.aed_sum += float(np.linalg.norm(generated - real, axis=-1).sum())
        self.aed_frames += len(generated)

    def results(self) -> dict[str, object]:
        total = self.akd_frames + self.akd_missed
        return {
            "akd": self.akd_sum / self.akd_frames if self.akd_frames else None,
            "akd_missed_fraction": self.akd_missed / total if total else None,
            "aed": self.aed_sum / self.aed_frames if self.aed_frames else None,
        }


def face_alignment_backend(device: str = "cpu") -> LandmarkBackend:
    """FAN 2-D landmarks through the ``face-alignment`` package (downloads its weights once)."""
    import face_alignment  # optional extra: pip install face-alignment

    types = getattr(face_alignment, "LandmarksType")
    kind = getattr(types, "TWO_D", None) or getattr(types, "_2D")
    model = face_alignment.FaceAlignment(kind, device=str(device))

    def detect(frames: np.ndarray) -> list[Optional[np.ndarray]]:
        found = []
        for frame in frames:
            points = model.get_landmarks_from_image(frame)
            found.append(None if not points else np.asarray(points[0], np.float64))
        return found

    return detect


def facenet_backend(device: str = "cpu") -> IdentityBackend:
    """InceptionResnetV1 (VGGFace2) embeddings through ``facenet-pytorch`` (downloads its weights once)."""
    import torch
    import torch.nn.functional as F
    from facenet_pytorch import InceptionResnetV1  # optional extra: pip install facenet-pytorch

    model = InceptionResnetV1(pretrained="vggface2").eval().to(device)

    def embed(frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().to(device)
        x = F.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False, antialias=True)
        with torch.inference_mode():
            return model((x - 127.5) / 128.0).cpu().numpy()

    return embed


def _start(module: str, package: str, factory, device: str):
    """(backend, None) or (None, why it is skipped) for one optional package."""
    if importlib.util.find_spec(module) is None:
        return None, f"needs the optional {package} package (pip install {package})"
    try:
        return factory(device), None
    except Exception as exc:  # weights unreachable offline, incompatible version...
        return None, f"{package} could not start ({type(exc).__name__}: {exc})"


def load_face_backends(device: str = "cpu") -> tuple[LandmarkBackend | None, IdentityBackend | None, dict[str, str]]:
    """The installed backends, and for each missing one why (goes into metrics.json)."""
    landmarks, akd_reason = _start("face_alignment", "face-alignment", face_alignment_backend, device)
    identity, aed_reason = _start("facenet_pytorch", "facenet-pytorch", facenet_backend, device)
    reasons = {"akd_skipped": akd_reason, "aed_skipped": aed_reason}
    return landmarks, identity, {k: v for k, v in reasons.items() if v is not None}
