"""``fomm download``: fetch the videos of the clips table with yt-dlp, resumably.

The work happens in :mod:`pipeline.download`; this module is the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from pipeline.cli_support import user_errors
from pipeline.download.config import DownloadConfig
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import summary

__all__ = ["DownloadConfig", "command"]


@user_errors
def command(
    clips: Optional[Path] = typer.Argument(
        None, metavar="CLIPS", show_default=False,
        help="Clips table (Parquet) from `fomm metadata`; default: download.clips in the params.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", metavar="DIR", show_default=False,
        help="Output directory; default: download.out in the params.",
    ),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml to read the download section from."),
) -> None:
    """Download the videos of CLIPS into DIR with yt-dlp, one download per video id.

    Mode `whole` writes DIR/{video_id}.mp4; mode `sections` fetches only the clips' time ranges, as DIR/{video_id}/{start}-{end}.mp4 (25 fps frame numbers).

    Transient failures (HTTP 429/5xx, dropped connections, timeouts) are retried with exponential backoff; permanent ones (404, 410, private, unavailable, geo-blocked, sign-in) are skipped, and not requested again by later runs unless download.retry_failed is true. DIR/report.parquet gives every video's status and reason, DIR/archive.txt lists finished videos, DIR/download.log has the details.

    Re-running resumes: finished videos are not fetched again. Exits 1 (after writing the report) when fewer than min_success_fraction of the videos are present.
    """
    # Imported here so `fomm --help` and the other stages do not pay for yt-dlp and pyarrow.
    from pipeline.download.report import REPORT_NAME, summary_line
    from pipeline.download.runner import run_download

    config = load_section(params, "download", DownloadConfig)
    clips_path = clips if clips is not None else Path(config.clips)
    out_dir = out if out is not None else Path(config.out)
    result = run_download(config, clips_path, out_dir, show_progress=True)
    summary(summary_line(result.report, result.new_bytes, result.seconds, result.already_done, result.not_retried))
    total = len(result.report)
    if total == 0 or result.ok == 0 or result.ok < config.min_success_fraction * total:
        # Not a user mistake (exit 2) but a failed run: exit 1, after the report is written.
        if total == 0:
            message = f"no videos in {clips_path}; nothing to download"
        else:
            message = (
                f"only {result.ok} of {total} videos downloaded, below min_success_fraction "
                f"{config.min_success_fraction}; see {out_dir / REPORT_NAME}"
            )
        print(f"error: {message}", file=sys.stderr)
        raise typer.Exit(code=1)
