"""A folder of the user's own videos as metadata input: no annotations at all.

Layout: ``FOLDER/<person>/<video>.mp4`` (one person per sub-folder, named as you like) or
``FOLDER/<video>.mp4`` (one person per video). Each video becomes one clip spanning the
whole video with the whole frame as its box; ``fomm tubes`` then finds the faces in it.

Ids: the video id is ``own`` + 8 URL-safe characters of a hash of the video's path
relative to FOLDER (stable, 11 characters like a YouTube id); person ids are
``id8xxxx`` numbered in the sorted order of the person names. The ``source`` column keeps
the relative path, so a clip can be traced back to its file and person name.
Partition: the last person (sorted) is the test set when there are two or more people,
else the last video; ``test_identities`` may add more.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from fomm_core.errors import FommError

from .records import UNREADABLE_VIDEO, Candidate, Reject

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
PERSON_BASE = 80000
MAX_PEOPLE = 10000
FPS = 25.0  # clips are counted in 25 fps frames (CONTRACTS.md); crop resamples


@dataclass(frozen=True)
class OwnVideo:
    path: Path
    relative: str
    person: str


def list_videos(folder: Path) -> list[OwnVideo]:
    """Visible video files directly in ``folder`` (a person each) or one level down (per folder)."""
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            found.append(OwnVideo(entry, entry.name, entry.stem))
        elif entry.is_dir():
            for inner in sorted(entry.iterdir()):
                if inner.is_file() and not inner.name.startswith(".") and inner.suffix.lower() in VIDEO_SUFFIXES:
                    found.append(OwnVideo(inner, f"{entry.name}/{inner.name}", entry.name))
    return found


def is_video_folder(folder: Path) -> bool:
    return folder.is_dir() and bool(list_videos(folder))


def own_video_id(relative: str) -> str:
    digest = hashlib.sha256(f"fomm-own:{relative}".encode()).digest()
    return "own" + base64.urlsafe_b64encode(digest).decode("ascii")[:8]


def probe(path: Path) -> tuple[int, int, float]:
    """(width, height, duration seconds) by ffprobe; RuntimeError with ffprobe's reason."""
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", "--",
           str(path.absolute())]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError((result.stderr.strip().splitlines() or ["ffprobe failed"])[-1])
    info = json.loads(result.stdout or "{}")
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    if video is None:
        raise RuntimeError("no video stream")
    duration = float(video.get("duration") or info.get("format", {}).get("duration") or 0.0)
    if duration <= 0 and str(video.get("nb_frames", "")).isdigit():
        rate = Fraction(video.get("avg_frame_rate") or "25/1")
        duration = int(video["nb_frames"]) / float(rate or 25)
    return int(video["width"]), int(video["height"]), duration


def read_folder(folder: Path, test_ids: frozenset[str]) -> Iterator[Candidate | Reject]:
    videos = list_videos(folder)
    people = sorted({v.person for v in videos})
    if len(people) > MAX_PEOPLE:
        raise FommError(f"{folder}: {len(people)} people; at most {MAX_PEOPLE} sub-folders are supported")
    person_ids = {name: f"id{PERSON_BASE + k:05d}" for k, name in enumerate(people)}
    if len(people) >= 2:
        test = {person_ids[people[-1]]}
        test_video = None
    else:
        test, test_video = set(), (videos[-1].relative if len(videos) >= 2 else None)
    for row, video in enumerate(videos, start=1):
        person = person_ids[video.person]
        video_id = own_video_id(video.relative)
        source = f"{folder}/{video.relative}"
        try:
            width, height, duration = probe(video.path)
        except (RuntimeError, ValueError, ZeroDivisionError, subprocess.TimeoutExpired) as exc:
            yield Reject(source, row, video_id, person, None, None, UNREADABLE_VIDEO, str(exc)[:200])
            continue
        partition = "test" if person in test or person in test_ids or video.relative == test_video else "train"
        yield Candidate(
            source=source, row=row, video_id=video_id, person_id=person, partition=partition, start=0,
            end=int(duration * FPS), fps=FPS, left=0.0, top=0.0, right=float(width), bottom=float(height),
            width=width, height=height, url=video.path.absolute().as_uri(),
        )
