"""Settings of the crop stage (the ``crop`` section of params.yaml), the one config it runs on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from pipeline.cores import worker_count

from .ffmpeg_job import EncodeSettings

X264_PRESETS = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                       "slower", "veryslow"]
# Bumped when the crop itself changes (filters, audio layout): every clip is then redone.
CROP_FORMAT = 1


@dataclass(frozen=True)
class CropConfig:
    """How each clip is cut, and how many at once.

    The input table, the videos folder and the output folder are command-line arguments
    (the DVC stage passes them), not params.
    """

    size: int = 256  # output side, pixels
    square: bool = True  # square box around the face box centre (no squashed faces)
    increase_area: float = 0.1  # enlarge the box side by this fraction
    crf: int = 6  # libx264 quality: measured 42-44 dB worst-frame PSNR vs the uncompressed crop
    preset: X264_PRESETS = "veryfast"
    pix_fmt: Literal["yuv444p", "yuv420p"] = "yuv444p"
    require_audio: bool = True  # a source without audio fails the clip (no_audio)
    max_missing_frames: int = 0  # frames a clip may lack at the end of a video and still pass
    workers: int = 0  # clips cropped at once (one ffmpeg each); 0 = one per core
    ffmpeg_threads: int = 1  # threads per ffmpeg (decoder, filters, encoder)

    def validate(self) -> None:
        if self.size < 16 or self.size > 4096:
            raise ValueError(f"size must be between 16 and 4096, got {self.size}")
        if self.pix_fmt == "yuv420p" and self.size % 2:
            raise ValueError(f"size must be even with pix_fmt yuv420p, got {self.size}")
        if not 0.0 <= self.increase_area <= 10.0:
            raise ValueError(f"increase_area must be between 0 and 10, got {self.increase_area}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be between 0 and 51, got {self.crf}")
        if self.max_missing_frames < 0:
            raise ValueError(f"max_missing_frames must be >= 0, got {self.max_missing_frames}")
        if not 0 <= self.workers <= 256:
            raise ValueError(f"workers must be between 0 (one per core) and 256, got {self.workers}")
        if not 1 <= self.ffmpeg_threads <= 64:
            raise ValueError(f"ffmpeg_threads must be between 1 and 64, got {self.ffmpeg_threads}")

    @property
    def encode(self) -> EncodeSettings:
        return EncodeSettings(size=self.size, crf=self.crf, preset=self.preset, pix_fmt=self.pix_fmt,
                              threads=self.ffmpeg_threads)

    def worker_count(self) -> int:
        return worker_count(self.workers)

    def output_settings(self) -> str:
        """Everything here that changes a clip's files (not workers or threads)."""
        return (f"v{CROP_FORMAT}|{self.size}|{self.square}|{self.increase_area!r}|{self.crf}|{self.preset}|"
                f"{self.pix_fmt}|{self.require_audio}|{self.max_missing_frames}")


def settings_key(config_settings: str, clip_fields: str) -> str:
    """16 hex digits naming one clip's output: the stage settings plus the clip's own row.

    Recorded per clip in the manifest; a re-run skips a clip whose recorded key matches.
    """
    return hashlib.sha1(f"{config_settings}#{clip_fields}".encode()).hexdigest()[:16]
