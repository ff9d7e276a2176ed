"""``fomm crop``: face clips of the downloaded videos, as FOMM's VoxCeleb tools lay them out.

For each row of the clips table: one ffmpeg pass seeks to the clip, resamples to 25 fps,
crops the (squared, enlarged) face box scaled to the real resolution, resizes it to
``size`` x ``size`` with area filtering, and writes ``{out}/{partition}/{clip_id}.mp4``
plus a 16 kHz mono WAV. ``{out}/manifest.parquet`` records every clip, failed or not.
The work lives in :mod:`pipeline.crop`; this module is the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from pipeline.cli_support import user_errors
from pipeline.crop.config import CropConfig
from pipeline.crop.manifest import JOURNAL_NAME, MANIFEST_NAME
from pipeline.crop.run import parse_part, run_crop
from pipeline.journal import parts_dir
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import progress_bar, summary

__all__ = ["CropConfig", "command"]

DEFAULT_CLIPS = Path("artifacts/metadata/clips.parquet")
DEFAULT_VIDEOS = Path("artifacts/videos")
DEFAULT_OUT = Path("artifacts/clips")


@user_errors
def command(
    clips: Path = typer.Argument(DEFAULT_CLIPS, metavar="CLIPS", help="Clips table (Parquet) from `fomm metadata`."),
    videos: Path = typer.Option(DEFAULT_VIDEOS, "--videos", metavar="DIR", help="Directory of downloaded videos."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", metavar="DIR", help="Output directory for clips and manifest.parquet."),
    part: Optional[str] = typer.Option(
        None, "--part", metavar="K/N", show_default=False,
        help="Crop only share K of N (by video id; N machines on one shared filesystem each take one) "
             "and leave the manifest to `--merge`."),
    merge: bool = typer.Option(False, "--merge", help="Crop nothing: merge the rows of finished --part runs into OUT/manifest.parquet."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; only its `crop` section is read."),
) -> None:
    """Crop each clip's face to a 256x256 25 fps MP4 plus a 16 kHz mono WAV.

    One ffmpeg pass per clip, several in parallel (crop.workers; 0 = one per core). The face box is scaled from the metadata resolution to the real one, squared and enlarged (crop.square, crop.increase_area), resized with area filtering and encoded visually lossless (crop.crf).

    Resumable: a clip whose files exist and were made with the same settings is skipped, so a killed or repeated run redoes only the clips that were in flight. Clips that cannot be made (not_downloaded, corrupt, outside_frame, past_end, no_audio, ffmpeg_error) are recorded in OUT/manifest.parquet and the rest go on; the command fails (exit 1) only when no clip succeeds.
    """
    config = load_section(params, "crop", CropConfig)
    share = parse_part(part)
    with progress_bar() as bar:
        task = bar.add_task("crop", total=None)
        outcome = run_crop(clips, videos, out, config, share, merge_only=merge,
                           on_done=lambda: bar.advance(task), on_total=lambda n: bar.update(task, total=n))
    report = outcome.report
    for r in report.first_failures:
        detail = f" ({r.detail})" if r.detail else ""
        print(f"crop: {r.clip.clip_id}: {r.reason}{detail}", file=sys.stderr)
    if report.failed > len(report.first_failures):
        print(f"crop: ... {report.failed - len(report.first_failures)} more failures in the manifest", file=sys.stderr)
    manifest = out / MANIFEST_NAME
    if merge:
        summary(f"crop merge: {outcome.manifest_rows} clips in {manifest}")
        if outcome.missing:
            print(f"error: {outcome.missing} clips of {clips} have no result yet; run the --part shares "
                  f"that did not finish, then --merge again", file=sys.stderr)
            raise typer.Exit(code=1)
        return
    if outcome.not_in_table:
        summary(f"note: {manifest} also keeps {outcome.not_in_table} clips of earlier runs that {clips} "
                f"does not list (use a new --out for this table alone)")
    line = report.summary_line("crop" if outcome.manifest_rows is not None else f"crop part {share[0]}/{share[1]}")
    if report.ok == 0 and report.clips > 0:
        print(f"error: {line}; no clip succeeded, see {manifest}", file=sys.stderr)
        raise typer.Exit(code=1)
    summary(line)
    if outcome.manifest_rows is None:
        summary(f"crop: rows kept in {parts_dir(out, JOURNAL_NAME)}; "
                f"run `fomm crop --merge` once every part has finished")
