"""``fomm shard``: pack cropped clips into Parquet frame shards for fast random access."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import typer

from fomm_core.atomic import atomic_dir
from fomm_core.errors import FommError
from pipeline.cli_support import user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import progress_bar, summary

BYTES_PER_MB = 1_000_000


@dataclass
class ShardConfig:
    """The ``shard`` section of params.yaml."""

    clips_dir: str = "artifacts/clips"
    out: str = "artifacts/shards"
    groundtruth_dir: str = ""  # synth ground-truth folder; '' = none
    max_shard_mb: float = 256.0  # MB = 10^6 bytes; a clip never spans shards
    row_group_frames: int = 8  # random access reads whole row groups: keep small
    image_format: Literal["png", "jpeg"] = "png"
    jpeg_quality: int = 95
    png_compression: int = 0  # zlib level 0..9; 0 (stored, unfiltered) decodes ~10x faster than 1 at ~2x the size
    encode_threads: int = 2

    def validate(self) -> None:
        if not self.max_shard_mb > 0:
            raise ValueError(f"max_shard_mb must be positive, got {self.max_shard_mb}")
        if self.row_group_frames < 1:
            raise ValueError(f"row_group_frames must be at least 1, got {self.row_group_frames}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 0..100, got {self.jpeg_quality}")
        if not 0 <= self.png_compression <= 9:
            raise ValueError(f"png_compression must be 0..9, got {self.png_compression}")
        if self.encode_threads < 1:
            raise ValueError(f"encode_threads must be at least 1, got {self.encode_threads}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _groundtruth_dir(value: str) -> Path | None:
    """The synth ``groundtruth/`` folder; the synth output folder holding it is accepted too."""
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise FommError(f"{path}: ground-truth folder not found; pass the synth stage's groundtruth/ folder")
    if (path / "groundtruth").is_dir():
        path = path / "groundtruth"
    return path


@user_errors
def command(
    clips_dir: Optional[Path] = typer.Argument(
        None, help="Crop stage output (manifest.parquet + clips). Default: shard.clips_dir."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output folder, replaced atomically. Default: shard.out."),
    groundtruth: Optional[Path] = typer.Option(
        None, "--groundtruth",
        help="Synthetic ground-truth folder (synth output groundtruth/); adds gt_* arrays to the NPZs. "
             "Default: shard.groundtruth_dir."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml to read the shard section from."),
) -> None:
    """Pack ok clips of the crop manifest into Parquet shards of bounded size.

    Writes OUT/shards/shard-NNNNN.parquet (one row per frame: clip_id, frame, encoded
    PNG/JPEG image; small row groups for random access), OUT/index.parquet (one row per clip:
    shard and row range) and OUT/features/{partition}/{clip_id}.npz (16 kHz audio, 100 Hz
    log-mel, synthetic ground truth when given). Same input, byte-identical output.
    """
    # Deferred so `fomm --help` and the other stages do not pay for pyarrow/cv2/scipy.
    from pipeline.shard.build import BuildOptions, build, list_clips
    from pipeline.shard.encode import ImageCodec

    cfg = load_section(params, "shard", ShardConfig)
    clips_path = clips_dir if clips_dir is not None else Path(cfg.clips_dir)
    out_path = out if out is not None else Path(cfg.out)
    gt_dir = _groundtruth_dir(str(groundtruth) if groundtruth is not None else cfg.groundtruth_dir)
    for name, inp in (("clips folder", clips_path), ("ground-truth folder", gt_dir)):
        if inp is not None and (out_path.resolve() == inp.resolve() or out_path.resolve() in inp.resolve().parents):
            raise FommError(f"--out {out_path} would replace the {name} {inp}; choose another output folder")
    clips, skipped = list_clips(clips_path)
    if not clips:
        raise FommError(f"{clips_path}/manifest.parquet: no clips with status ok; check fomm crop's output")
    options = BuildOptions(
        max_shard_bytes=int(cfg.max_shard_mb * BYTES_PER_MB),
        row_group_frames=cfg.row_group_frames,
        codec=ImageCodec(cfg.image_format, cfg.jpeg_quality, cfg.png_compression),
        encode_threads=cfg.encode_threads,
    )
    with atomic_dir(out_path) as tmp, progress_bar() as bar:
        task = bar.add_task("shard", total=len(clips))
        result = build(clips, skipped, tmp, options, gt_dir, advance=lambda: bar.advance(task))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; give it normal permissions
    summary(
        f"shard: {result.clips} clips, {result.frames} frames, {result.shards} shards, "
        f"{result.bytes / BYTES_PER_MB:.1f} MB, {result.seconds:.1f} s"
        + (f", {result.with_groundtruth} with ground truth" if gt_dir is not None else "")
        + (f", {result.skipped} not-ok rows skipped" if result.skipped else "")
    )
