"""Reader for the original VoxCeleb annotation txt files, from a directory tree or a zip.

Layout ``txt/idXXXXX/<youtube_id>/00001.txt``, one file per utterance::

    Identity  : \tid10001
    Reference : \t1zcIwhmdeo4
    Offset    : \t1
    FV Conf   : \t16.647\t(1)
    ASD Conf  : \t4.493

    FRAME \tX \tY \tW \tH 
    000245 \t0255 \t0116 \t0096 \t0096 

FRAME is a 25 fps frame index. VoxCeleb2 boxes are fractions of the frame, VoxCeleb1 boxes
pixels of the frame scaled to height 360. Each file becomes one clip: the union box over
its rows, ``start`` = first FRAME, ``end`` = last FRAME + 1. Zip members are read in
memory and never extracted, so member names are only ever parsed as (untrusted) ids.
Members are streamed with caps on the bytes actually inflated (per member and in total),
never trusting the sizes a (hostile) header declares.
"""

from __future__ import annotations

import lzma
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

from fomm_core.errors import FommError
from pipeline.video_files import MAX_FRAME

from .checks import valid_person_id, valid_video_id
from .records import EMPTY_BOX, YOUTUBE_URL, Candidate, RowError, short

VOX1_TXT_HEIGHT = 360
TXT_FPS = 25.0
TABLE_COLUMNS = ["FRAME", "X", "Y", "W", "H"]
# Real annotation files are a few hundred KB at most; refuse anything absurd (zip bombs).
MAX_FILE_BYTES = 16 * 1024 * 1024
# All members together may inflate to at most this many times the zip's size (text
# deflates ~5-10x; a bomb ~1000x), and never less than this floor.
MAX_ZIP_RATIO = 100
MIN_TOTAL_BYTES = 256 * 1024 * 1024
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class AnnotationFile:
    """One txt file: where it came from, its path components, and how to read it."""

    source: str
    parts: tuple[str, ...]
    size: int
    read: Callable[[], bytes]


@dataclass(frozen=True)
class Annotation:
    header: dict[str, str]
    first_line: int
    frames: list[int]
    boxes: list[tuple[float, float, float, float]]  # x, y, w, h per frame


def _skip(parts: tuple[str, ...]) -> bool:
    """Hidden files and macOS zip resource forks are not annotations.

    ``..`` is not hidden: such a (hostile) member is read and rejected as malformed_id.
    """
    return any((part.startswith(".") and part != "..") or part == "__MACOSX" for part in parts)


def annotation_root(directory: Path) -> Path:
    """The txt tree itself, or the ``txt/`` folder inside the given parent."""
    inner = directory / "txt"
    return inner if inner.is_dir() else directory


def read_capped(handle: BinaryIO, limit: int) -> bytes:
    """At most ``limit`` bytes from ``handle``; :class:`RowError` if there are more."""
    chunks, total = [], 0
    while True:
        chunk = handle.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise RowError(f"more than {limit} bytes, more than an annotation file can be", 1)
        chunks.append(chunk)


def _read_file(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as handle:
            return read_capped(handle, MAX_FILE_BYTES)
    return read


def list_tree(directory: Path, source: str) -> list[AnnotationFile]:
    root = annotation_root(directory)
    found: list[AnnotationFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if not name.endswith(".txt") or name.startswith("."):
                continue
            path = Path(dirpath) / name
            if not path.is_file():
                continue
            rel = path.relative_to(root)
            found.append(AnnotationFile(f"{source}/{rel.as_posix()}", rel.parts, path.stat().st_size, _read_file(path)))
    return found


def list_zip(path: Path, source: str) -> tuple[zipfile.ZipFile, list[AnnotationFile]]:
    """The open archive (the caller closes it) and its txt members, in name order."""
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise FommError(f"{path}: not a readable zip archive ({exc}); re-download it") from None

    budget = [max(MIN_TOTAL_BYTES, MAX_ZIP_RATIO * path.stat().st_size)]  # bytes left to inflate

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # bzip2/lzma decompress a whole read at once, without an output bound.
                raise RowError(f"compressed with method {info.compress_type}; only stored and deflate "
                               "members are read", 1)
            try:
                with archive.open(info) as handle:
                    data = read_capped(handle, min(MAX_FILE_BYTES, budget[0]))
            except RowError:
                if budget[0] < MAX_FILE_BYTES:
                    raise FommError(f"{path}: members inflate to more than {MAX_ZIP_RATIO} times the zip's "
                                    "size; not a VoxCeleb annotation zip (a zip bomb?)") from None
                raise
            except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, RuntimeError,
                    NotImplementedError) as exc:
                raise FommError(f"{path}: member {info.filename!r} is corrupt ({exc}); re-download the zip") from None
            budget[0] -= len(data)
            return data
        return read

    found = []
    for info in sorted(infos, key=lambda i: i.filename):
        parts = tuple(p for p in PurePosixPath(info.filename).parts if p != "/")
        if info.is_dir() or not info.filename.endswith(".txt") or _skip(parts):
            continue
        found.append(AnnotationFile(f"{source}!{info.filename}", parts, info.file_size, reader(info)))
    return archive, found


def _number(token: str, line: int, name: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise RowError(f"line {line}: {name} {short(token)!r} is not a number", line) from None
    if not math.isfinite(value):
        raise RowError(f"line {line}: {name} {short(token)!r} is not finite", line)
    return value


def parse_annotation(text: str) -> Annotation:
    """Header ``Key : value`` lines, then the ``FRAME X Y W H`` table (tab separated)."""
    lines = text.splitlines()
    header: dict[str, str] = {}
    index = 0
    while index < len(lines) and lines[index].split()[:1] != ["FRAME"]:
        line = lines[index]
        if line.strip():
            if ":" not in line:
                raise RowError(f"line {index + 1}: expected a 'Key : value' header line or the FRAME table", index + 1)
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
        index += 1
    if index == len(lines):
        raise RowError("no 'FRAME X Y W H' table", 1)
    columns = lines[index].split()
    if columns != TABLE_COLUMNS:
        raise RowError(f"line {index + 1}: table header {' '.join(columns)[:40]!r} is not FRAME X Y W H", index + 1)
    frames: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    first_line = index + 2
    for number, line in enumerate(lines[index + 1:], start=index + 2):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            raise RowError(f"line {number}: {len(tokens)} values, expected FRAME X Y W H", number)
        if not (tokens[0].isascii() and tokens[0].isdigit()):
            raise RowError(f"line {number}: FRAME {short(tokens[0])!r} is not a frame number", number)
        frame = int(tokens[0])
        if frame > MAX_FRAME:
            raise RowError(f"line {number}: FRAME {short(tokens[0])!r} is beyond {MAX_FRAME}; not a real frame number", number)
        if frames and frame <= frames[-1]:
            raise RowError(f"line {number}: FRAME {frame} does not follow {frames[-1]}", number)
        x, y, w, h = (_number(t, number, n) for t, n in zip(tokens[1:], TABLE_COLUMNS[1:]))
        if w <= 0 or h <= 0:
            raise RowError(f"line {number}: box size {w:g}x{h:g} is empty", number, EMPTY_BOX)
        if not frames:
            first_line = number
        frames.append(frame)
        boxes.append((x, y, w, h))
    if not frames:
        raise RowError(f"line {index + 1}: the FRAME table has no rows", index + 1)
    return Annotation(header, first_line, frames, boxes)


def is_fractional(annotation: Annotation) -> bool:
    """VoxCeleb2 boxes are fractions: every X, Y, W, H is at most 1."""
    return all(value <= 1.0 for box in annotation.boxes for value in box)


def ids_for(file: AnnotationFile, header: dict[str, str]) -> tuple[str, str]:
    """(person, video) from ``.../person/video/00001.txt``, else from the header.

    When both the path and the header hold well-formed ids they must agree.
    """
    from_path = len(file.parts) >= 3
    person = file.parts[-3] if from_path else header.get("Identity", "")
    video = file.parts[-2] if from_path else header.get("Reference", "")
    for label, value, key, valid in (("person", person, "Identity", valid_person_id), ("video", video, "Reference", valid_video_id)):
        said = header.get(key, "")
        if from_path and valid(value) and valid(said) and said != value:
            raise RowError(f"header {key} {said!r} disagrees with the {label} folder {value!r}", 1)
    return person, video


def to_candidate(file: AnnotationFile, annotation: Annotation, person: str, video: str,
                 units: str, test_ids: frozenset[str]) -> Candidate:
    """The utterance as one clip: union box, first frame to last frame + 1."""
    fractional = is_fractional(annotation) if units == "auto" else units == "fraction"
    width, height = (1, 1) if fractional else (0, VOX1_TXT_HEIGHT)
    left = min(x for x, _, _, _ in annotation.boxes)
    top = min(y for _, y, _, _ in annotation.boxes)
    right = max(x + w for x, _, w, _ in annotation.boxes)
    bottom = max(y + h for _, y, _, h in annotation.boxes)
    return Candidate(
        source=file.source, row=annotation.first_line, video_id=video, person_id=person,
        partition="test" if person in test_ids else "train",
        start=annotation.frames[0], end=annotation.frames[-1] + 1, fps=TXT_FPS,
        left=left, top=top, right=right, bottom=bottom, width=width, height=height,
        url=YOUTUBE_URL.format(video_id=video),
    )


def read_annotation(file: AnnotationFile, units: str, test_ids: frozenset[str]) -> Candidate:
    """Parse one file into a clip; raises :class:`RowError` for a bad file."""
    if file.size > MAX_FILE_BYTES:
        raise RowError(f"{file.size} bytes, more than an annotation file can be", 1)
    try:
        text = file.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RowError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", 1) from None
    annotation = parse_annotation(text)
    person, video = ids_for(file, annotation.header)
    return to_candidate(file, annotation, person, video, units, test_ids)
