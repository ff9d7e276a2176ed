"""Where training reports go: a small protocol so fomm_core never imports a tracking library."""

from __future__ import annotations

import os
from typing import Mapping, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TrainingLogger(Protocol):
    """Metrics per step, images (H x W x 3 uint8) per step, and files (checkpoints)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_image(self, name: str, image: np.ndarray, step: int) -> None: ...

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...


class NullLogger:
    """Discards everything: non-zero ranks, or tracking turned off."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        pass

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        pass
