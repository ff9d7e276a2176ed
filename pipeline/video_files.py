"""Where the download stage puts a video, and how the crop stage finds it again.

Two layouts, one per download mode:

* whole videos: ``DIR/{video_id}.mp4``
* time sections: ``DIR/{video_id}/{start:06d}-{end:06d}.mp4``, a section starting at
  frame ``start`` (25 fps) of the original video and ending before frame ``end``.

:func:`find_source` returns the file holding a clip and the time offset of that file in
the original video, so the crop stage seeks to ``start / 25 - offset``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .ids import is_video_id, safe_join

METADATA_FPS = 25
# 460 days at 25 fps: any larger "frame number" is corrupt metadata (and would overflow
# int64 columns downstream), so every reader refuses it.
MAX_FRAME = 10**9
SECTION_NAME = re.compile(r"(\d{6,})-(\d{6,})\.mp4")


@dataclass(frozen=True)
class SourceVideo:
    path: Path
    offset_seconds: float


def whole_video_path(videos_dir: Path, video_id: str) -> Path:
    return safe_join(videos_dir, f"{video_id}.mp4")


def section_path(videos_dir: Path, video_id: str, start: int, end: int) -> Path:
    return safe_join(videos_dir, video_id, f"{start:06d}-{end:06d}.mp4")


def find_source(videos_dir: Path, video_id: str, start: int, end: int) -> SourceVideo | None:
    """The downloaded file covering frames [start, end) of ``video_id``, or None."""
    if not is_video_id(video_id):
        return None
    whole = whole_video_path(videos_dir, video_id)
    if whole.is_file():
        return SourceVideo(whole, 0.0)
    section_dir = safe_join(videos_dir, video_id)
    if section_dir.is_dir():
        for candidate in sorted(section_dir.iterdir()):
            match = SECTION_NAME.fullmatch(candidate.name)
            if match is None:
                continue
            sec_start, sec_end = int(match.group(1)), int(match.group(2))
            if sec_start <= start and end <= sec_end:
                return SourceVideo(candidate, sec_start / METADATA_FPS)
    return None
