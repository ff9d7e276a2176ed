"""``fomm crop``: face clips of the downloaded videos, as FOMM's VoxCeleb tools lay them out.

For each row of the clips table: one ffmpeg pass seeks to the clip, resamples to 25 fps,
crops the (squared, enlarged) face box scaled to the real resolution, resizes it to
``size`` x ``size`` with area filtering, and writes ``{out}/{partition}/{clip_id}.mp4``
plus a 16 kHz mono WAV. ``{out}/manifest.parquet`` records every clip, failed or not.
The work lives in :mod:`pipeline.crop`; this module is the command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import typer

from fomm_core.errors import FommError
from pipeline.cli_support import user_errors
from pipeline.crop.ffmpeg_job import EncodeSettings
from pipeline.crop.run import CropOptions, crop_all
from pipeline.crop.table import read_clips, write_manifest
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import progress_bar, summary

X264_PRESETS = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                       "slower", "veryslow"]
SHOW_FAILURES = 5  # failed clips listed on stderr; the manifest has them all


@dataclass
class CropConfig:
    """The ``crop`` section of params.yaml."""

    clips: str = "artifacts/metadata/clips.parquet"  # clips table (metadata stage)
    videos: str = "artifacts/videos"  # downloaded videos (download stage)
    out: str = "artifacts/clips"  # output directory
    size: int = 256  # output side, pixels
    square: bool = True  # square box around the face box centre (no squashed faces)
    increase_area: float = 0.1  # enlarge the box side by this fraction
    crf: int = 6  # libx264 quality: measured 42-44 dB worst-frame PSNR vs the uncompressed crop
    preset: X264_PRESETS = "veryfast"
    pix_fmt: Literal["yuv444p", "yuv420p"] = "yuv444p"
    require_audio: bool = True  # a source without audio fails the clip (no_audio)
    max_missing_frames: int = 0  # frames a clip may lack at the end of a video and still pass
    workers: int = 2  # clips cropped at once (one ffmpeg each)
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
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers must be between 1 and 256, got {self.workers}")
        if not 1 <= self.ffmpeg_threads <= 64:
            raise ValueError(f"ffmpeg_threads must be between 1 and 64, got {self.ffmpeg_threads}")

    def options(self) -> CropOptions:
        return CropOptions(
            encode=EncodeSettings(size=self.size, crf=self.crf, preset=self.preset,
                                  pix_fmt=self.pix_fmt, threads=self.ffmpeg_threads),
            square=self.square, increase_area=self.increase_area,
            require_audio=self.require_audio, max_missing_frames=self.max_missing_frames,
            workers=self.workers,
        )


@user_errors
def command(
    clips: Optional[Path] = typer.Argument(
        None, metavar="CLIPS", show_default=False,
        help="Clips table (Parquet) from `fomm metadata` (default: crop.clips in params)."),
    videos: Optional[Path] = typer.Option(
        None, "--videos", metavar="DIR", show_default=False,
        help="Directory of downloaded videos (default: crop.videos)."),
    out: Optional[Path] = typer.Option(
        None, "--out", metavar="DIR", show_default=False,
        help="Output directory for clips and manifest.parquet (default: crop.out)."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; only its `crop` section is read."),
) -> None:
    """Crop each clip's face to a 256x256 25 fps MP4 plus a 16 kHz mono WAV.

    One ffmpeg pass per clip, several in parallel (crop.workers). The face box is scaled from the metadata resolution to the real one, squared and enlarged (crop.square, crop.increase_area), resized with area filtering and encoded visually lossless (crop.crf).

    Clips that cannot be made (not_downloaded, corrupt, past_end, no_audio, ffmpeg_error) are recorded in OUT/manifest.parquet and the rest go on; the command fails (exit 1) only when no clip succeeds.
    """
    config = load_section(params, "crop", CropConfig)
    clips_path = clips if clips is not None else Path(config.clips)
    videos_dir = videos if videos is not None else Path(config.videos)
    out_dir = out if out is not None else Path(config.out)
    table = read_clips(clips_path)
    if not videos_dir.is_dir():
        raise FommError(f"{videos_dir}: videos directory not found; run `fomm download` first or pass --videos")
    with progress_bar() as bar:
        task = bar.add_task("crop", total=len(table))
        report = crop_all(table, videos_dir, out_dir, config.options(), on_done=lambda _: bar.advance(task))
    write_manifest(report.results, out_dir / "manifest.parquet")
    failures = [r for r in report.results if not r.ok]
    for r in failures[:SHOW_FAILURES]:
        detail = f" ({r.detail})" if r.detail else ""
        print(f"crop: {r.clip.clip_id}: {r.reason}{detail}", file=sys.stderr)
    if len(failures) > SHOW_FAILURES:
        print(f"crop: ... {len(failures) - SHOW_FAILURES} more failures in the manifest", file=sys.stderr)
    if report.ok == 0:
        print(f"error: {report.summary_line()}; no clip succeeded, see {out_dir / 'manifest.parquet'}",
              file=sys.stderr)
        raise typer.Exit(code=1)
    summary(report.summary_line())
