"""``fomm tubes``: face tubes of the downloaded videos, as a clips table for ``fomm crop``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fomm_core.errors import FommError
from fomm_core.outputs import claim_output_dir
from pipeline.cli_support import user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import progress_bar, summary
from pipeline.tubes.config import TubesConfig
from pipeline.tubes.run import run_tubes

__all__ = ["TubesConfig", "command"]


@user_errors
def command(
    clips: Path = typer.Argument(Path("artifacts/metadata/clips.parquet"), metavar="CLIPS",
                                 help="Clips table from `fomm metadata`."),
    videos: Path = typer.Option(Path("artifacts/videos"), "--videos", metavar="DIR", help="Downloaded videos."),
    metadata_input: Optional[Path] = typer.Option(
        None, "--input", metavar="PATH", show_default=False,
        help="What `fomm metadata` read (metadata.input): a txt tree or zip gives each utterance's "
             "reference track; a vox-metadata CSV is passed through (tubes.mode auto); a video folder is detected."),
    out: Path = typer.Option(Path("artifacts/tubes"), "--out", metavar="DIR",
                             help="Output folder: clips.parquet, rejects.parquet, parts/ (resumable)."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; its `tubes` section is read."),
) -> None:
    """Cut the videos into face tubes: detection every `stride` frames, tracking, a new tube
    whenever the face box overlaps the tube's first box less than `iou_with_initial` (or
    the tube reaches `max_frames`), the union box enlarged by `increase_area`; tubes shorter
    than `min_frames` or smaller than `min_size` px go to rejects.parquet with the reason.

    OUT/clips.parquet has the metadata clips-table columns, so `fomm crop` reads it as is.
    Videos are processed in parallel (tubes.workers, 0 = all cores); each finished video is
    saved under OUT/parts/, so a killed run continues where it stopped.
    """
    config = load_section(params, "tubes", TubesConfig)
    if metadata_input is None:
        raise FommError("--input: pass what `fomm metadata` read (metadata.input), so the tubes know its kind")
    if not videos.is_dir():
        raise FommError(f"{videos}: videos directory not found; run `fomm download` first or pass --videos")
    claim_output_dir(out, "tubes", (clips, videos, metadata_input))
    with progress_bar() as bar:
        task = bar.add_task("tubes", total=None)
        report = run_tubes(clips, videos, metadata_input, out, config, on_done=lambda: bar.advance(task),
                           on_total=lambda n: bar.update(task, total=n))
    if report.kept == 0:
        raise FommError(f"no face tube kept from {report.input_clips} clips ({report.summary_line()}); "
                        f"see {out / 'rejects.parquet'}")
    summary(report.summary_line())
