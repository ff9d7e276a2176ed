"""The clips table as the crop stage reads it: checked column-wise, held as Arrow columns.

The table is untrusted input (it may have been edited or come from elsewhere): every id
that becomes a path is checked here, and a bad row stops the stage with a message naming
the row, before any work is done. At VoxCeleb2 size (1.1M rows) the table stays in Arrow
buffers (~150 bytes per clip); :class:`Clip` objects exist only for the clips in flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fomm_core.errors import FommError
from pipeline.ids import CLIP_ID, PARTITIONS, PERSON_ID, VIDEO_ID_RULE, YOUTUBE_ID, is_person_id, is_video_id, parse_clip_id
from pipeline.video_files import MAX_FRAME

from .geometry import Box

ID_COLUMNS = ("clip_id", "video_id", "person_id", "partition")
NUMBER_COLUMNS = ("start", "end", "left", "top", "right", "bottom", "width", "height")
CLIP_COLUMNS = ID_COLUMNS + NUMBER_COLUMNS
BATCH_ROWS = 4096  # rows turned into Python objects at a time


@dataclass(frozen=True)
class Clip:
    """One row of the clips table, checked."""

    row: int
    clip_id: str
    video_id: str
    person_id: str
    partition: str
    start: int
    end: int
    box: Box
    width: float
    height: float

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    def fields(self) -> str:
        """What of the row shapes the output (for the per-clip settings key)."""
        b = self.box
        return (f"{self.clip_id}|{self.partition}|{b.left!r}|{b.top!r}|{b.right!r}|{b.bottom!r}|"
                f"{self.width!r}|{self.height!r}")


def _number(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FommError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise FommError(f"{where}: expected a finite number, got {value!r}")
    return number


def _integer(value: object, where: str) -> int:
    number = _number(value, where)
    if number != int(number) or not 0 <= number <= MAX_FRAME:
        raise FommError(f"{where}: expected a whole frame number from 0 to {MAX_FRAME}, got {value!r}")
    return int(number)


def check_row(values: dict, where: str) -> Clip:
    """One row checked the slow, explicit way; raises :class:`FommError` naming what is wrong."""
    clip_id, video_id, person_id, partition = (values[k] for k in ID_COLUMNS)
    if not is_video_id(video_id):
        raise FommError(f"{where}: video_id {video_id!r} is not {VIDEO_ID_RULE}")
    if not is_person_id(person_id):
        raise FommError(f"{where}: person_id {person_id!r} is not of the form id12345")
    if partition not in PARTITIONS:
        raise FommError(f"{where}: partition {partition!r} is not one of {', '.join(PARTITIONS)}")
    start, end = _integer(values["start"], f"{where} start"), _integer(values["end"], f"{where} end")
    if not isinstance(clip_id, str):
        raise FommError(f"{where}: clip_id {clip_id!r} is not a string")
    try:
        parsed = parse_clip_id(clip_id)
    except FommError as exc:
        raise FommError(f"{where}: {exc}") from None
    if parsed != (person_id, video_id, start, end):
        raise FommError(f"{where}: clip_id {clip_id!r} does not match its person/video/start/end columns")
    if end <= start:
        raise FommError(f"{where}: frames [{start}, {end}) are empty")
    box = Box(*(_number(values[k], f"{where} {k}") for k in ("left", "top", "right", "bottom")))
    if box.width <= 0 or box.height <= 0:
        raise FommError(f"{where}: box {box.left:g},{box.top:g},{box.right:g},{box.bottom:g} is empty")
    width, height = _number(values["width"], f"{where} width"), _number(values["height"], f"{where} height")
    if height <= 0 or width < 0:
        raise FommError(f"{where}: frame size {width:g}x{height:g} is invalid (height > 0, width >= 0)")
    return Clip(-1, clip_id, video_id, person_id, partition, start, end, box, width, height)


def _float_column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values as float64, mask of rows that are not finite numbers)."""
    column = table[name]
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        return np.zeros(len(table)), np.ones(len(table), bool)  # the slow path names the row
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return values, ~np.isfinite(values)


def _bad_rows(table: pa.Table) -> np.ndarray:
    """Rows some check refuses, computed column by column (C loops, not 1.1M Python calls)."""
    def string_ok(name: str, pattern: str) -> np.ndarray:
        column = table[name]
        if not pa.types.is_string(column.type):
            return np.zeros(len(table), bool)
        matched = pc.match_substring_regex(column, f"^{pattern}$")
        return pc.fill_null(matched, False).to_numpy(zero_copy_only=False)

    good = (string_ok("video_id", YOUTUBE_ID.pattern) & string_ok("person_id", PERSON_ID.pattern)
            & string_ok("clip_id", CLIP_ID.pattern))
    partition = table["partition"]
    good &= pc.fill_null(pc.is_in(partition, pa.array(PARTITIONS, partition.type)), False).to_numpy(zero_copy_only=False) \
        if pa.types.is_string(partition.type) else False
    numbers = {name: _float_column(table, name) for name in NUMBER_COLUMNS}
    for _, bad in numbers.values():
        good &= ~bad
    start, end = numbers["start"][0], numbers["end"][0]
    with np.errstate(invalid="ignore"):
        for frames in (start, end):
            good &= (frames >= 0) & (frames <= MAX_FRAME) & (frames == np.floor(frames))
        good &= end > start
        good &= (numbers["right"][0] > numbers["left"][0]) & (numbers["bottom"][0] > numbers["top"][0])
        good &= (numbers["height"][0] > 0) & (numbers["width"][0] >= 0)
    if good.all():
        # clip_id must spell person#video#start#end: build the expected ids in Arrow.
        def padded(values: np.ndarray) -> pa.Array:
            return pc.utf8_lpad(pc.cast(pa.array(values.astype(np.int64)), pa.string()), 6, "0")

        expected = pc.binary_join_element_wise(table["person_id"], table["video_id"], padded(start), padded(end), "#")
        good &= pc.equal(expected, table["clip_id"]).to_numpy(zero_copy_only=False)
    return np.flatnonzero(~good)


@dataclass
class ClipTable:
    """The checked clips of a table, as Arrow columns; rows become :class:`Clip` on demand."""

    path: Path
    table: pa.Table

    def __len__(self) -> int:
        return self.table.num_rows

    def clips(self, rows: np.ndarray | None = None) -> Iterator[Clip]:
        """The clips of ``rows`` (default: all), in order, built a batch at a time."""
        rows = np.arange(len(self)) if rows is None else rows
        for offset in range(0, len(rows), BATCH_ROWS):
            chunk = rows[offset: offset + BATCH_ROWS]
            batch = self.table.take(pa.array(chunk))
            columns = {name: batch[name].to_pylist() for name in CLIP_COLUMNS}
            for i, row in enumerate(chunk.tolist()):
                yield Clip(
                    row, columns["clip_id"][i], columns["video_id"][i], columns["person_id"][i],
                    columns["partition"][i], int(columns["start"][i]), int(columns["end"][i]),
                    Box(float(columns["left"][i]), float(columns["top"][i]), float(columns["right"][i]),
                        float(columns["bottom"][i])),
                    float(columns["width"][i]), float(columns["height"][i]),
                )

    def part_rows(self, part: int, parts: int) -> np.ndarray:
        """Rows of share ``part`` (1-based) of ``parts``: by a hash of the video id, so every
        machine computes the same split and one video's clips stay on one machine."""
        if parts == 1:
            return np.arange(len(self))
        encoded = pc.dictionary_encode(self.table["video_id"]).combine_chunks()
        videos = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)  # one per video
        owner = pd.util.hash_array(videos) % np.uint64(parts)  # fixed key: the same on every machine
        return np.flatnonzero(owner[encoded.indices.to_numpy(zero_copy_only=False)] == np.uint64(part - 1))

    def clip_ids(self) -> pa.ChunkedArray:
        return self.table["clip_id"]


def read_clips(path: Path) -> ClipTable:
    """The clips of ``path`` (Parquet, columns of CONTRACTS.md "metadata"), all checked."""
    if not path.is_file():
        raise FommError(f"{path}: clips table not found; run `fomm metadata` first or pass CLIPS")
    try:
        names = pq.read_schema(path).names
        missing = [c for c in CLIP_COLUMNS if c not in names]
        if missing:
            raise FommError(f"{path}: missing column(s) {', '.join(missing)}; expected the metadata stage's clips table")
        table = pq.read_table(path, columns=list(CLIP_COLUMNS))
    except FommError:
        raise
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise FommError(f"{path}: not a readable Parquet table ({type(exc).__name__})") from None
    if table.num_rows == 0:
        raise FommError(f"{path}: the clips table has no rows; nothing to crop")
    for name in ID_COLUMNS:  # pandas writes large_string; one string type from here on
        if pa.types.is_large_string(table[name].type):
            table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(pa.string()))
    bad = _bad_rows(table)
    if bad.size:
        row = int(bad[0])
        check_row({k: v[0] for k, v in table.slice(row, 1).to_pydict().items()}, f"{path} row {row}")
        # The column checks are stricter only about how clip_id spells its frames.
        raise FommError(f"{path} row {row}: clip_id is not person#video#start#end with 6-digit frames")
    duplicate = _first_duplicate(table["clip_id"])
    if duplicate is not None:
        raise FommError(f"{path} row {duplicate}: duplicate clip_id {table['clip_id'][duplicate].as_py()!r}")
    table = table.combine_chunks()
    pa.default_memory_pool().release_unused()  # the checks' temporary columns
    return ClipTable(path, table)


def _first_duplicate(ids: pa.ChunkedArray) -> int | None:
    """The first row repeating an earlier clip id (Arrow's hash table, no Python strings)."""
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return None
    rows = np.flatnonzero(pc.fill_null(pc.is_in(ids, repeated), False).to_numpy(zero_copy_only=False))
    first: dict[str, int] = {}
    for row in rows.tolist():
        value = ids[row].as_py()
        if value in first:
            return row
        first[value] = row
    return None
