"""The yt-dlp parameters for one video: format, output names, extractors, politeness.

Everything is passed as ``YoutubeDL(params)``; nothing reads yt-dlp's config files, so a
run depends only on params.yaml.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from yt_dlp.utils import download_range_func

from fomm_core.tool_paths import tool_arg
from pipeline.video_files import METADATA_FPS

from .config import DownloadConfig
from .jobs import UrlKind

WHOLE_TEMPLATE = "video.%(ext)s"
SECTION_TEMPLATE = "section-%(section_start)s-%(section_end)s.%(ext)s"


def format_selector(max_height: int) -> str:
    """Best mp4 video+m4a audio up to ``max_height``, then single-file fallbacks."""
    h = int(max_height)
    return f"bv*[height<={h}][ext=mp4]+ba[ext=m4a]/b[height<={h}][ext=mp4]/b[height<={h}]/b"


def allowed_extractors(kind: UrlKind) -> list[str]:
    """Only the extractor the URL needs, so a crafted URL cannot reach any other site code."""
    return ["youtube"] if kind == "youtube" else ["generic"]


def section_ranges(sections: list[tuple[int, int]]) -> list[tuple[float, float]]:
    return [(start / METADATA_FPS, end / METADATA_FPS) for start, end in sections]


class YtdlpLogger:
    """yt-dlp's ``logger``: its chatter goes to our log file, never to the console."""

    def __init__(self, logger: logging.Logger, video_id: str) -> None:
        self._logger, self._prefix = logger, f"{video_id}: "

    def debug(self, msg: str) -> None:
        self._logger.debug(self._prefix + msg)

    def info(self, msg: str) -> None:
        self._logger.debug(self._prefix + msg)

    def warning(self, msg: str) -> None:
        self._logger.info(self._prefix + msg)

    def error(self, msg: str) -> None:
        # The worker logs every failed attempt with its reason; keep yt-dlp's copy quieter.
        self._logger.debug(self._prefix + msg)


def build_params(
    config: DownloadConfig,
    kind: UrlKind,
    work_dir: Path,
    logger: YtdlpLogger,
    *,
    sections: list[tuple[int, int]] | None = None,
    archive: set | None = None,
    cookiefile: Path | None = None,
    progress_hook: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """``YoutubeDL`` params downloading into ``work_dir`` (a whole video, or ``sections``)."""
    template = SECTION_TEMPLATE if sections else WHOLE_TEMPLATE
    params: dict[str, Any] = {
        "format": format_selector(config.max_height),
        "merge_output_format": "mp4",
        "postprocessors": [{"key": "FFmpegVideoRemuxer", "preferedformat": "mp4"}],
        "outtmpl": {"default": tool_arg(work_dir / template)},  # absolute: never read as an option
        "allowed_extractors": allowed_extractors(kind),
        "noplaylist": True,
        "continuedl": True,
        "socket_timeout": config.socket_timeout,
        # yt-dlp's own retries resume a transfer that already started; the first request
        # and everything else is retried by our loop (retry.py), so extraction gets none.
        "retries": config.ytdlp_retries,
        "fragment_retries": config.ytdlp_retries,
        "extractor_retries": 0,
        "logger": logger,
        "quiet": True,
        "noprogress": True,
        "color": "no_color",
    }
    if kind == "file":
        params["enable_file_urls"] = True
    if sections:
        params["download_ranges"] = download_range_func(None, section_ranges(sections))
        params["force_keyframes_at_cuts"] = config.force_keyframes_at_cuts
    if archive is not None:
        # A set (not a path) makes yt-dlp record ids in memory only; the worker writes
        # them to DIR/archive.txt after the file is in place, so the archive never
        # claims a video whose download was cut short.
        params["download_archive"] = archive
    if cookiefile is not None:
        params["cookiefile"] = tool_arg(cookiefile)
    if config.sleep_interval > 0:
        params["sleep_interval"] = config.sleep_interval
        if config.max_sleep_interval > 0:
            params["max_sleep_interval"] = config.max_sleep_interval
    if config.ratelimit > 0:
        params["ratelimit"] = config.ratelimit
    if progress_hook is not None:
        params["progress_hooks"] = [progress_hook]
    return params
