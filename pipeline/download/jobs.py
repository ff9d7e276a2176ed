"""The clips table turned into one download job per video, validated before any request.

The table is untrusted: ids are checked with :mod:`pipeline.ids`, URLs must be http(s) or
(only when the config allows it) file:// or a path relative to the table's folder
(:mod:`pipeline.local_urls`), and one video must not have two URLs.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from fomm_core.errors import FommError
from pipeline.ids import is_video_id
from pipeline.local_urls import file_uri, is_relative_url

REQUIRED_COLUMNS = ("video_id", "url", "start", "end")
YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}

UrlKind = Literal["youtube", "http", "file"]


@dataclass(frozen=True)
class VideoJob:
    """One video to fetch: its id, source URL and the clip frame ranges it must cover."""

    video_id: str
    url: str  # as in the table (and the report)
    kind: UrlKind
    sections: tuple[tuple[int, int], ...]  # sorted, unique [start, end) 25 fps frames
    location: str = ""  # what yt-dlp opens: ``url``, or the absolute file:// URL of a relative one

    @property
    def fetch_url(self) -> str:
        return self.location or self.url


def url_kind(url: str) -> UrlKind | None:
    """``youtube``/``http``/``file`` for a URL this stage accepts, None otherwise."""
    if is_relative_url(url):
        return "file"
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    scheme = parsed.scheme.lower()
    if scheme == "file":
        return "file" if parsed.path else None
    if scheme not in ("http", "https") or not parsed.hostname:
        return None
    return "youtube" if parsed.hostname.lower() in YOUTUBE_HOSTS else "http"


def _frame(value: object, column: str, where: str) -> int:
    if isinstance(value, bool) or value is None:
        raise FommError(f"{where}: {column} {value!r} is not a frame number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FommError(f"{where}: {column} {value!r} is not a frame number") from None
    if math.isnan(number) or number < 0 or number != int(number):
        raise FommError(f"{where}: {column} {value!r} must be a whole frame number >= 0")
    return int(number)


def read_clips(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FommError(f"{path}: clips table not found; run `fomm metadata` first or pass CLIPS")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise FommError(f"{path}: not a readable Parquet table ({type(exc).__name__})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise FommError(f"{path}: missing column(s) {', '.join(missing)}; expected the clips table of `fomm metadata`")
    return table


def plan_jobs(table: pd.DataFrame, source: Path, allow_file_urls: bool) -> list[VideoJob]:
    """One :class:`VideoJob` per video id, in first-appearance order."""
    urls: dict[str, str] = {}
    first_row: dict[str, int] = {}
    sections: dict[str, set[tuple[int, int]]] = {}
    for row, (video_id, url, start, end) in enumerate(
        zip(table["video_id"], table["url"], table["start"], table["end"])
    ):
        where = f"{source} row {row}"
        if not is_video_id(video_id):
            raise FommError(f"{where}: video id {video_id!r} is not 11 characters of [A-Za-z0-9_-]")
        if not isinstance(url, str) or not url.strip():
            raise FommError(f"{where}: video {video_id} has no url")
        url = url.strip()
        kind = url_kind(url)
        if kind is None:
            raise FommError(f"{where}: url {url!r} must be an http(s):// or file:// URL or a path relative to the table")
        if kind == "file" and not allow_file_urls:
            raise FommError(
                f"{where}: file:// url {url!r} is refused; set `allow_file_urls: true` in the "
                "download section of params.yaml to read local files"
            )
        start_frame, end_frame = _frame(start, "start", where), _frame(end, "end", where)
        if end_frame <= start_frame:
            raise FommError(f"{where}: end {end_frame} must be after start {start_frame}")
        if video_id in urls and urls[video_id] != url:
            raise FommError(
                f"{where}: video {video_id} has url {url!r} but row {first_row[video_id]} "
                f"gave {urls[video_id]!r}; one video needs one url"
            )
        urls.setdefault(video_id, url)
        first_row.setdefault(video_id, row)
        sections.setdefault(video_id, set()).add((start_frame, end_frame))
    return [
        VideoJob(video_id, url, url_kind(url), tuple(sorted(sections[video_id])),  # type: ignore[arg-type]
                 file_uri(url, source.parent) if is_relative_url(url) else "")
        for video_id, url in urls.items()
    ]
