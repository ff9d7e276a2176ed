"""The clips and rejects tables (CONTRACTS.md "metadata"), written atomically as Parquet.

Each table carries a schema-metadata stamp naming the command that wrote it, so a later
run replaces its own tables and refuses to overwrite any other file at ``--out``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fomm_core.atomic import atomic_path
from pipeline.local_urls import is_relative_url, rebase

from .records import Clip, Reject

CLIPS_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("video_id", pa.string()), ("person_id", pa.string()),
    ("partition", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("fps", pa.float64()),
    ("left", pa.float64()), ("top", pa.float64()), ("right", pa.float64()), ("bottom", pa.float64()),
    ("width", pa.int64()), ("height", pa.int64()), ("url", pa.string()), ("source", pa.string()),
    ("box_clipped", pa.bool_()),
])

REJECTS_SCHEMA = pa.schema([
    ("source", pa.string()), ("row", pa.int64()), ("video_id", pa.string()), ("person_id", pa.string()),
    ("start", pa.int64()), ("end", pa.int64()), ("reason", pa.string()), ("detail", pa.string()),
])


def _table(rows: list, schema: pa.Schema) -> pa.Table:
    columns = {name: [getattr(row, name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def clips_table(clips: list[Clip], folder: Path) -> pa.Table:
    """Sorted by clip_id, which is unique, so the table is the same for the same input.

    ``folder`` is where the table goes: relative urls (relative to their CSV) are rewritten
    relative to it, so the table stays valid wherever the project is cloned.
    """
    ordered = sorted(clips, key=lambda c: c.clip_id)
    ordered = [dataclasses.replace(c, url=rebase(c.url, Path(c.source).parent, folder)) if is_relative_url(c.url) else c
               for c in ordered]
    return _table(ordered, CLIPS_SCHEMA)


def rejects_table(rejects: list[Reject]) -> pa.Table:
    ordered = sorted(rejects, key=lambda r: (r.source, r.row, r.reason, r.detail))
    return _table(ordered, REJECTS_SCHEMA)


STAMP_KEY = b"fomm.command"
STAMP = b"metadata"


def write_table(table: pa.Table, target: Path) -> None:
    stamped = table.replace_schema_metadata({**(table.schema.metadata or {}), STAMP_KEY: STAMP})
    with atomic_path(target) as tmp:
        pq.write_table(stamped, tmp)


def written_by_metadata(path: Path) -> bool:
    """A table this stage wrote: stamped, or (older versions) exactly its clips/rejects schema."""
    try:
        schema = pq.read_schema(path)
    except Exception:  # noqa: BLE001 - not Parquet at all: certainly not ours
        return False
    if (schema.metadata or {}).get(STAMP_KEY) == STAMP:
        return True
    return schema.names in (CLIPS_SCHEMA.names, REJECTS_SCHEMA.names)


assert [f.name for f in dataclasses.fields(Clip)] == CLIPS_SCHEMA.names
assert [f.name for f in dataclasses.fields(Reject)] == REJECTS_SCHEMA.names
