"""The ``shard`` section of params.yaml: the one config the shard stage and its workers take."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from pipeline.cores import worker_count


@dataclass(frozen=True)
class ShardConfig:
    """How clips become shards. Defaults chosen by ``bench/shard_codecs.py`` (README table)."""

    clips_dir: str = "artifacts/clips"
    out: str = "artifacts/shards"
    groundtruth_dir: str = ""  # synth ground-truth folder; '' = none
    # A shard closes before the clip that would take it past this many frames (a clip never
    # spans shards): ~120 MB at the default JPEG's ~30 KB per 256x256 frame.
    frames_per_shard: int = 4096
    image_format: Literal["jpeg", "png", "webp"] = "jpeg"
    jpeg_quality: int = 95
    jpeg_subsampling: int = 444  # 444 keeps full chroma, 420 halves it both ways (smaller, ~2 dB lower)
    png_compression: int = 0  # zlib level 0..9 (0: stored, unfiltered, fastest to decode)
    webp_quality: int = 95  # 1..100 lossy
    workers: int = 0  # clip-encoding processes; 0 = one per available core

    def validate(self) -> None:
        if self.frames_per_shard < 1:
            raise ValueError(f"frames_per_shard must be at least 1, got {self.frames_per_shard}")
        if self.image_format not in ("jpeg", "png", "webp"):
            raise ValueError(f"image_format must be jpeg, png or webp, got {self.image_format!r}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 0..100, got {self.jpeg_quality}")
        if self.jpeg_subsampling not in (444, 420):
            raise ValueError(f"jpeg_subsampling must be 444 or 420, got {self.jpeg_subsampling}")
        if not 0 <= self.png_compression <= 9:
            raise ValueError(f"png_compression must be 0..9, got {self.png_compression}")
        if not 1 <= self.webp_quality <= 100:
            raise ValueError(f"webp_quality must be 1..100, got {self.webp_quality}")
        if not 0 <= self.workers <= 1024:
            raise ValueError(f"workers must be 0 (all cores) .. 1024, got {self.workers}")

    def worker_count(self) -> int:
        return worker_count(self.workers)

    def encoding(self) -> dict:
        """The settings that decide a frame's bytes (part of every clip's resume key)."""
        keys = {"jpeg": ("jpeg_quality", "jpeg_subsampling"), "png": ("png_compression",),
                "webp": ("webp_quality",)}[self.image_format]
        values = asdict(self)
        return {"image_format": self.image_format, **{k: values[k] for k in keys}}
