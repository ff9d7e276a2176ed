"""Identifiers that come from metadata, and the only way they become file names.

Metadata is untrusted input: an id is checked against a strict pattern before it is used
in a path, and :func:`safe_join` refuses any path that would leave the output directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fomm_core.errors import FommError

# A leading '-' is refused: such a name reads as an option to any tool given a bare path
# (ffmpeg, ffprobe, yt-dlp, a user's shell). Paths handed to tools are also always
# absolute or prefixed; this is the second lock on the same door.
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{10}")
VIDEO_ID_RULE = "11 characters of [A-Za-z0-9_-], not starting with '-'"
PERSON_ID = re.compile(r"id[0-9]{5}")
PARTITIONS = ("train", "test")


def is_video_id(value: object) -> bool:
    return isinstance(value, str) and YOUTUBE_ID.fullmatch(value) is not None


def is_person_id(value: object) -> bool:
    return isinstance(value, str) and PERSON_ID.fullmatch(value) is not None


def make_clip_id(person_id: str, video_id: str, start: int, end: int) -> str:
    """``person#video#start#end`` with 6-digit frames, the name FOMM's VoxCeleb tools use."""
    if not is_person_id(person_id):
        raise FommError(f"person id {person_id!r} is not of the form id12345")
    if not is_video_id(video_id):
        raise FommError(f"video id {video_id!r} is not {VIDEO_ID_RULE}")
    return f"{person_id}#{video_id}#{int(start):06d}#{int(end):06d}"


CLIP_ID = re.compile(r"(id[0-9]{5})#([A-Za-z0-9_][A-Za-z0-9_-]{10})#([0-9]{6,})#([0-9]{6,})")


def parse_clip_id(clip_id: str) -> tuple[str, str, int, int]:
    match = CLIP_ID.fullmatch(clip_id)
    if match is None:
        raise FommError(f"clip id {clip_id!r} is not of the form person#video#start#end")
    person, video, start, end = match.groups()
    return person, video, int(start), int(end)


# One plain name: no separator, not hidden, not '..' (what ids and their file names are).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_#][A-Za-z0-9_.#-]*")


def safe_join(root: Path, *parts: str) -> Path:
    """``root/parts...``, refusing absolute parts, ``..`` and anything resolving outside root."""
    if all(isinstance(part, str) and _PLAIN_NAME.fullmatch(part) for part in parts):
        names = parts  # the common case (checked ids), without pathlib's parsing per call
    else:
        for part in parts:
            if not part or part.startswith(("/", "\\")) or ".." in Path(part).parts or "\x00" in part:
                raise FommError(f"refusing unsafe path component {part!r} under {root}")
        names = Path(*parts).parts
    path = root.joinpath(*parts)
    # Only a symlink can lead a checked name outside root: look for one (an lstat per
    # part) before paying for a full resolve (an lstat per component from /), which
    # dominated bookkeeping over 150k videos.
    step = os.fspath(root)
    for name in names:
        step = os.path.join(step, name)
        if os.path.islink(step):
            break
    else:
        return path
    root_resolved = root.resolve()
    resolved = path.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise FommError(f"refusing path {path} outside {root}")
    return path
