"""``OUT/manifest.parquet``: one row per clip cropped into OUT, kept incrementally.

A run appends each finished clip's row to its journal part (:mod:`pipeline.journal`) the
moment the clip's files are in place, so a killed run loses at most the clips in flight.
The merge (at the end of a run, or ``fomm crop --merge`` after ``--part`` runs) writes the
manifest from the previous one plus the parts, the latest row of each clip winning,
sorted by ``clip_id`` so the same results give the same bytes.

Results merge across runs: a run over another table adds its clips and never drops the
rows (or files) of clips it was not asked about. Each row records ``settings``, the key of
the stage settings and clip row it was made with; a later run skips a clip whose key
matches and whose files exist, and redoes it otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError
from pipeline.journal import JournalWriter, is_being_written, part_files, read_parts, remove_parts

from .geometry import Box
from .table import Clip

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.parquet"
JOURNAL_NAME = "manifest"

SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("person_id", pa.string()),
    ("partition", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("status", pa.string()),
    ("reason", pa.string()), ("num_frames", pa.int64()), ("fps", pa.float64()), ("video", pa.string()),
    ("audio", pa.string()), ("crop_left", pa.float64()), ("crop_top", pa.float64()),
    ("crop_right", pa.float64()), ("crop_bottom", pa.float64()), ("src_width", pa.int64()),
    ("src_height", pa.int64()), ("settings", pa.string()),
])
MANIFEST_COLUMNS = tuple(SCHEMA.names)
ROW_GROUP_ROWS = 65536  # the writer buffers one row group: keep it small at 1.1M clips


@dataclass
class ClipResult:
    """One manifest row: what happened to a clip."""

    clip: Clip
    settings: str = ""
    status: str = "failed"
    reason: str = ""
    num_frames: int = 0
    fps: float = 0.0
    video: str = ""
    audio: str = ""
    crop: Box | None = None
    src_width: int = 0
    src_height: int = 0
    detail: str = field(default="", compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict:
        c, box = self.clip, self.crop
        return {
            "clip_id": c.clip_id, "video_id": c.video_id, "person_id": c.person_id,
            "partition": c.partition, "start": c.start, "end": c.end, "status": self.status,
            "reason": self.reason, "num_frames": self.num_frames, "fps": self.fps, "video": self.video,
            "audio": self.audio,
            # JSON has no NaN: a missing box is null in the journal, NaN in the manifest.
            "crop_left": box.left if box else None, "crop_top": box.top if box else None,
            "crop_right": box.right if box else None, "crop_bottom": box.bottom if box else None,
            "src_width": self.src_width, "src_height": self.src_height, "settings": self.settings,
        }


class ManifestJournal(JournalWriter):
    def __init__(self, out: Path) -> None:
        super().__init__(out, JOURNAL_NAME)

    def add(self, result: ClipResult) -> None:
        self.append(result.row())


def _manifest(out: Path) -> pa.Table:
    path = out / MANIFEST_NAME
    if not path.is_file():
        return SCHEMA.empty_table()
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FommError(f"{path}: not a readable Parquet file ({exc}); move it away and re-run "
                        "(its clips are then cropped again)") from None
    if "settings" not in table.column_names:  # written before settings were recorded: redo all
        table = table.append_column("settings", pa.array([""] * table.num_rows, pa.string()))
    return table.select(SCHEMA.names).cast(SCHEMA)


def _parts(out: Path, include_live: bool) -> tuple[list[Path], list[pa.Table]]:
    paths, tables = [], []
    for path in part_files(out, JOURNAL_NAME):
        if not include_live and is_being_written(path):
            log.info("leaving %s: a running crop is still writing it", path)
            continue
        try:
            tables.append(read_parts([path], SCHEMA))
            paths.append(path)
        except pa.ArrowInvalid as exc:  # its clips are redone: nothing is lost but time
            log.warning("ignoring damaged manifest part %s (%s)", path, exc)
    return paths, tables


def _latest_indices(table: pa.Table) -> pa.Array:
    """Row numbers of the last row of each clip id (rows are in age order), sorted by clip id.

    One stable sort of the row numbers by clip id (no hash table); within a run of equal
    ids the last row is the newest.
    """
    order = pc.sort_indices(table["clip_id"])  # stable: equal ids keep their age order
    ids = table["clip_id"].take(order)
    last_of_run = np.ones(len(ids), bool)
    if len(ids) > 1:
        last_of_run[:-1] = pc.not_equal(ids.slice(0, len(ids) - 1), ids.slice(1)).to_numpy(zero_copy_only=False)
    del ids
    keep = pc.filter(order, pa.array(last_of_run))
    pa.default_memory_pool().release_unused()  # the sort buffers
    return keep


def latest_rows(out: Path, columns: list[str] | None = None) -> pa.Table:
    """Every clip's latest row (``columns`` of it): the manifest plus all parts, live ones too."""
    _, parts = _parts(out, include_live=True)
    table = pa.concat_tables([_manifest(out), *parts])
    if columns is not None:
        table = table.select(columns)
    return table.take(_latest_indices(table))


def merge_manifest(out: Path) -> pa.ChunkedArray:
    """Write the manifest from the previous one and the finished parts; returns its clip ids.

    Written a row group at a time straight from the inputs, so the merge holds the inputs
    and one row group, never a second copy of 1.1M rows. Parts still locked by a running
    crop (another ``--part`` process) are left for a later merge; parts are deleted only
    after the manifest holding their rows is in place.
    """
    paths, parts = _parts(out, include_live=False)
    table = pa.concat_tables([_manifest(out), *parts])
    keep = _latest_indices(table)
    with atomic_path(out / MANIFEST_NAME) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
        for start in range(0, max(len(keep), 1), ROW_GROUP_ROWS):
            group = table.take(keep.slice(start, ROW_GROUP_ROWS))
            for name in ("crop_left", "crop_top", "crop_right", "crop_bottom"):
                index = group.schema.get_field_index(name)
                group = group.set_column(index, name, pc.fill_null(group[name], float("nan")))
            writer.write_table(group)
    remove_parts(out, JOURNAL_NAME, paths)
    return table["clip_id"].take(keep)


@dataclass
class Finished:
    """The clips with an ok row, for the skip check (Arrow columns, looked up in bulk)."""

    clip_id: pa.Array
    settings: pa.Array
    audio: pa.Array

    @classmethod
    def from_rows(cls, rows: pa.Table) -> "Finished":
        ok = rows.filter(pc.equal(rows["status"], "ok")).combine_chunks()
        return cls(ok["clip_id"].combine_chunks(), ok["settings"].combine_chunks(), ok["audio"].combine_chunks())

    def positions(self, clip_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Index into this table of each clip id, -1 where it has no ok row."""
        if len(self.clip_id) == 0:
            return np.full(len(clip_ids), -1, np.int64)
        found = pc.index_in(clip_ids, value_set=self.clip_id)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def recorded(self, positions: np.ndarray) -> tuple[list[str], list[bool]]:
        """For a batch of :meth:`positions`: the settings key and whether a WAV was recorded
        ('' and False for a clip without an ok row)."""
        keys, audio = [""] * len(positions), [False] * len(positions)
        known = positions >= 0
        if known.any():
            found = pa.array(positions[known])
            for i, key, wav in zip(np.flatnonzero(known).tolist(), self.settings.take(found).to_pylist(),
                                   self.audio.take(found).to_pylist()):
                keys[i], audio[i] = key, bool(wav)
        return keys, audio
