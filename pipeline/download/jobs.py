"""The clips table turned into one download job per video, validated before any request.

The table is untrusted: ids are checked with :mod:`pipeline.ids`, URLs must be http(s) or
(only when the config allows it) file:// or a path relative to the table's folder
(:mod:`pipeline.local_urls`), and one video must not have two URLs.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fomm_core.errors import FommError
from pipeline.ids import VIDEO_ID_RULE, is_video_id
from pipeline.local_urls import file_uri, is_relative_url
from pipeline.video_files import MAX_FRAME

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


# VoxCeleb's URLs, all of this one form: recognised without a full parse (150k of them).
_WATCH_URL = re.compile(r"https://www\.youtube\.com/watch\?v=[A-Za-z0-9_-]{11}")


def url_kind(url: str) -> UrlKind | None:
    """``youtube``/``http``/``file`` for a URL this stage accepts, None otherwise."""
    if _WATCH_URL.fullmatch(url):
        return "youtube"
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
    if math.isnan(number) or number < 0 or number > MAX_FRAME or number != int(number):
        raise FommError(f"{where}: {column} {value!r} must be a whole frame number from 0 to {MAX_FRAME}")
    return int(number)


def _frame_or_none(value: object) -> int | None:
    try:
        return _frame(value, "", "")
    except FommError:
        return None


def _frame_column(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(frames as int64, mask of rows that are not valid frame numbers), vectorized for numbers."""
    if values.dtype.kind in "iuf":
        number = values.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(number) | (number < 0) | (number > MAX_FRAME) | (number != np.floor(number))
        return np.where(bad, 0, number).astype(np.int64), bad
    parsed = [_frame_or_none(v) for v in values]
    bad = np.fromiter((p is None for p in parsed), bool, len(parsed))
    return np.fromiter((p or 0 for p in parsed), np.int64, len(parsed)), bad


def read_clips(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FommError(f"{path}: clips table not found; run `fomm metadata` first or pass CLIPS")
    try:
        names = pq.read_schema(path).names
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise FommError(f"{path}: missing column(s) {', '.join(missing)}; expected the clips table of `fomm metadata`")
        return pd.read_parquet(path, columns=list(REQUIRED_COLUMNS))
    except FommError:
        raise
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise FommError(f"{path}: not a readable Parquet table ({type(exc).__name__})") from None


def _checked_url(url: object, allow_file_urls: bool) -> tuple[str, UrlKind] | str:
    """(stripped url, kind), or what is wrong with it."""
    if not isinstance(url, str) or not url.strip():
        return "no url"
    url = url.strip()
    kind = url_kind(url)
    if kind is None:
        return f"url {url!r} must be an http(s):// or file:// URL or a path relative to the table"
    if kind == "file" and not allow_file_urls:
        return (f"file:// url {url!r} refused; set `allow_file_urls: true` in the "
                "download section of params.yaml to read local files")
    return url, kind


def _plain(value: object) -> object:
    """A numpy scalar as the Python value (so messages read ``-5``, not ``np.int64(-5)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _row_error(table: pd.DataFrame, row: int, where: str, url_checks: dict) -> FommError:
    """The message for the first bad row, worded as a reader of that one row would say it."""
    video_id, url = table["video_id"].iloc[row], table["url"].iloc[row]
    if not is_video_id(video_id):
        return FommError(f"{where}: video id {video_id!r} is not {VIDEO_ID_RULE}")
    checked = url_checks.get(url) if isinstance(url, str) else _checked_url(url, False)
    if isinstance(checked, str):
        what = f"video {video_id} has no url" if checked == "no url" else checked
        return FommError(f"{where}: {what}")
    start = _frame(_plain(table["start"].iloc[row]), "start", where)
    end = _frame(_plain(table["end"].iloc[row]), "end", where)
    return FommError(f"{where}: end {end} must be after start {start}")


def plan_jobs(table: pd.DataFrame, source: Path, allow_file_urls: bool, with_sections: bool = True) -> list[VideoJob]:
    """One :class:`VideoJob` per video id, in first-appearance order.

    Checked column-wise (a 1.1M-row table takes seconds, not minutes); the first bad row
    is reported as a row-by-row reader would. ``with_sections=False`` (whole mode) leaves
    ``sections`` empty instead of building one tuple per clip.
    """
    count = len(table)
    ids = table["video_id"]
    valid_id = ids.map({v: is_video_id(v) for v in pd.unique(ids.to_numpy(dtype=object))}).to_numpy(dtype=bool)
    urls = table["url"].to_numpy(dtype=object)
    url_checks = {u: _checked_url(u, allow_file_urls) for u in pd.unique(urls) if isinstance(u, str)}
    checked = [url_checks.get(u) if isinstance(u, str) else "no url" for u in urls]
    bad_url = np.fromiter((isinstance(c, str) for c in checked), bool, count)
    start, bad_start = _frame_column(table["start"])
    end, bad_end = _frame_column(table["end"])
    bad = ~valid_id | bad_url | bad_start | bad_end | (end <= start)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _row_error(table, row, f"{source} row {row}", url_checks)
    frame = pd.DataFrame({"video_id": ids.to_numpy(dtype=object), "url": [c[0] for c in checked],
                          "start": start, "end": end})
    first_url = frame.groupby("video_id", sort=False)["url"].transform("first")
    conflicts = np.flatnonzero((frame["url"] != first_url).to_numpy())
    if conflicts.size:
        row = int(conflicts[0])
        video_id = frame["video_id"].iloc[row]
        first = int(np.flatnonzero((frame["video_id"] == video_id).to_numpy())[0])
        raise FommError(
            f"{source} row {row}: video {video_id} has url {frame['url'].iloc[row]!r} but row {first} "
            f"gave {frame['url'].iloc[first]!r}; one video needs one url"
        )
    sections = _sections(frame) if with_sections else {}
    firsts = frame.drop_duplicates("video_id")
    kinds = {c[0]: c[1] for c in url_checks.values() if not isinstance(c, str)}
    return [VideoJob(video_id, url, kinds[url], sections.get(video_id, ()),
                     file_uri(url, source.parent) if is_relative_url(url) else "")
            for video_id, url in zip(firsts["video_id"], firsts["url"])]


def _sections(frame: pd.DataFrame) -> dict[str, tuple[tuple[int, int], ...]]:
    """Sorted, unique ``(start, end)`` per video."""
    unique = frame[["video_id", "start", "end"]].drop_duplicates().sort_values(["video_id", "start", "end"])
    videos = unique["video_id"].to_numpy(dtype=object)
    pairs = list(zip(unique["start"].tolist(), unique["end"].tolist()))
    bounds = [0, *(np.flatnonzero(videos[1:] != videos[:-1]) + 1).tolist(), len(videos)]
    return {videos[a]: tuple(pairs[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a}
