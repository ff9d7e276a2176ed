"""Settings of the tubes stage (the ``tubes`` section of params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fomm_core.faces.tubes import TubeSettings


@dataclass(frozen=True)
class TubesConfig(TubeSettings):
    """The tube recipe (:class:`fomm_core.faces.tubes.TubeSettings`: stride, iou_with_initial,
    max_frames, min_frames, min_size, increase_area, ...) plus how the stage runs it.

    ``mode``: ``auto`` detects tubes for txt annotations and own-video folders and passes a
    vox-metadata CSV's clips through unchanged (they are already tubes, made by the
    published preprocessing); ``detect`` detects for every input (a CSV clip's box is then
    the region its tubes must lie in); ``passthrough`` never detects.
    """

    mode: Literal["auto", "detect", "passthrough"] = "auto"
    detector: Literal["hog", "cnn"] = "hog"
    detect_height: int = 360  # frames taller than this are scaled down for detection (boxes scaled back)
    workers: int = 0  # videos processed at once (one process each); 0 = one per CPU core

    def validate(self) -> None:
        super().validate()
        if self.detect_height < 64:
            raise ValueError(f"detect_height must be at least 64, got {self.detect_height}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per CPU core), got {self.workers}")
