"""Reader for the published ``vox-metadata.csv`` format (plus an optional ``url`` column).

``video_id,start,end,bbox,fps,width,height,partition,person_id[,url]``: start/end are
25 fps frame indices (end exclusive), bbox is ``left-top-right-bot`` in pixels of a
``width x height`` frame; ``url`` is http(s)://, file:// or a path relative to the CSV's
folder (:mod:`pipeline.local_urls`). Each data row becomes a :class:`Candidate` or, when it cannot
be parsed, a ``malformed_row`` :class:`Reject`; ids are checked later.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Iterator

from fomm_core.errors import FommError
from pipeline.local_urls import is_relative_url
from pipeline.video_files import MAX_FRAME

from .records import MALFORMED_ROW, YOUTUBE_URL, Candidate, Reject, RowError, short

REQUIRED = ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition", "person_id")
OPTIONAL = ("url",)

_NUMBER = r"(-?\d+(?:\.\d+)?)"
# A single '-' separates the four numbers, so a second '-' can only be a sign.
BBOX = re.compile(rf"{_NUMBER}-{_NUMBER}-{_NUMBER}-{_NUMBER}")
# Only what the download stage can fetch; never anything that could read as an option.
URL = re.compile(r"(https?|file)://[^\s\x00-\x1f\x7f]+", re.ASCII)
PARTITIONS = ("train", "test")


def parse_frame_index(text: str, name: str) -> int:
    """A non-negative integer (``12.0`` tolerated, since some exports write floats)."""
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"{name} {short(text)!r} is not a number") from None
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise RowError(f"{name} {short(text)!r} is not a non-negative whole number")
    if value > MAX_FRAME:
        raise RowError(f"{name} {short(text)!r} is beyond {MAX_FRAME}; not a real frame number or size")
    return int(value)


def parse_positive_int(text: str, name: str) -> int:
    value = parse_frame_index(text, name)
    if value <= 0:
        raise RowError(f"{name} {short(text)!r} must be positive")
    return value


def parse_fps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"fps {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise RowError(f"fps {text!r} must be a positive number")
    return value


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    match = BBOX.fullmatch(text)
    if match is None:
        raise RowError(f"bbox {short(text)!r} is not left-top-right-bot")
    left, top, right, bottom = (float(v) for v in match.groups())
    if not all(math.isfinite(v) for v in (left, top, right, bottom)):
        raise RowError(f"bbox {short(text)!r} has a number too large to be a pixel position")
    return left, top, right, bottom


def parse_url(text: str, video_id: str) -> str:
    if not text:
        return YOUTUBE_URL.format(video_id=video_id)
    if URL.fullmatch(text) is None and not is_relative_url(text):
        raise RowError(f"url {short(text)!r} is not an http(s):// or file:// URL or a path relative to the CSV")
    return text


def parse_row(fields: dict[str, str], source: str, row: int) -> Candidate:
    start = parse_frame_index(fields["start"], "start")
    end = parse_frame_index(fields["end"], "end")
    if end <= start:
        raise RowError(f"end {end} is not after start {start}")
    left, top, right, bottom = parse_bbox(fields["bbox"])
    partition = fields["partition"].lower()
    if partition not in PARTITIONS:
        raise RowError(f"partition {short(fields['partition'])!r} is not train or test")
    return Candidate(
        source=source, row=row, video_id=fields["video_id"], person_id=fields["person_id"],
        partition=partition, start=start, end=end, fps=parse_fps(fields["fps"]),
        left=left, top=top, right=right, bottom=bottom,
        width=parse_positive_int(fields["width"], "width"),
        height=parse_positive_int(fields["height"], "height"),
        url=parse_url(fields.get("url", ""), fields["video_id"]),
    )


def maybe_int(text: str) -> int | None:
    """start/end for the rejects table, when they parse at all."""
    try:
        return parse_frame_index(text, "")
    except RowError:
        return None


def _reject(source: str, row: int, raw: dict[str, str], detail: str) -> Reject:
    return Reject(
        source, row, short(raw["video_id"]), short(raw["person_id"]),
        maybe_int(raw["start"]), maybe_int(raw["end"]), MALFORMED_ROW, detail,
    )


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def read_csv(path: Path, source: str) -> Iterator[Candidate | Reject]:
    """Every data row of ``path``; ``row`` is the 1-based line number (header = 1)."""
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise FommError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader, [])]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FommError(f"{path}: not a readable CSV file ({exc})") from None
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise FommError(
                f"{path}: missing column(s) {', '.join(missing)}; expected a header "
                f"{','.join(REQUIRED)}[,url] (the published vox-metadata.csv format)"
            )
        columns = {name: header.index(name) for name in REQUIRED + OPTIONAL if name in header}
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                raise FommError(f"{path}: not UTF-8 text near line {reader.line_num + 1} ({exc.reason})") from None
            except csv.Error as exc:
                yield Reject(source, reader.line_num, "", "", None, None, MALFORMED_ROW, f"CSV syntax: {exc}")
                continue
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            row = reader.line_num
            raw = {name: values[i].strip() if i < len(values) else "" for name, i in columns.items()}
            if len(values) != len(header):
                yield _reject(source, row, raw, f"{len(values)} fields, header has {len(header)}")
                continue
            try:
                yield parse_row(raw, source, row)
            except RowError as exc:
                yield _reject(source, row, raw, str(exc))
