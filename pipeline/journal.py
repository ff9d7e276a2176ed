"""Append-only journals: one JSON line per finished item, merged into a Parquet table at the end.

Rewriting a growing table after every item is quadratic at VoxCeleb size (150k videos,
1.1M clips); appending one line is constant time. Each writer (one process) owns one part
file named by start time, host and PID, and holds a POSIX lock on it while it writes, so
a merge can tell a live writer's part (locked) from a finished or killed one's (free).
A kill loses at most the line being written: a torn last line is ignored on reading.
Works on a shared filesystem (several machines, one folder): the names never collide and
``lockf`` goes through the NFS lock manager.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json

PART_SUFFIX = ".jsonl"


def parts_dir(folder: Path, name: str) -> Path:
    """``folder/.{name}.parts``: hidden, so nothing that lists outputs mistakes it for one."""
    return folder / f".{name}.parts"


class JournalWriter:
    """Appends rows (dicts of JSON scalars) to this process's own part file."""

    def __init__(self, folder: Path, name: str) -> None:
        directory = parts_dir(folder, name)
        directory.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().replace("/", "_") or "host"
        # Start time first: name order is start order, so later rows of a clip win a merge.
        self.path = directory / f"{time.time_ns()}.{host}.{os.getpid()}{PART_SUFFIX}"
        self._handle = open(self.path, "ab", buffering=0)  # one write() per row, no Python buffer
        fcntl.lockf(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.rows = 0

    def append(self, row: dict) -> None:
        """One line, one ``write``: a kill -9 cannot split a row the kernel has accepted."""
        self._handle.write(json.dumps(row, separators=(",", ":"), ensure_ascii=True).encode() + b"\n")
        self.rows += 1

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # also releases the lock

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def part_files(folder: Path, name: str) -> list[Path]:
    directory = parts_dir(folder, name)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(PART_SUFFIX) and p.is_file())


def is_being_written(path: Path) -> bool:
    """Whether another live process holds the part's lock (this process's own never counts)."""
    try:
        with open(path, "rb+") as handle:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.lockf(handle, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return False


def read_part(path: Path, schema: pa.Schema) -> pa.Table:
    """The complete lines of one part as a table of ``schema`` (a torn last line is dropped)."""
    data = path.read_bytes()
    end = data.rfind(b"\n")
    if end < 0:
        return schema.empty_table()
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    table = pa_json.read_json(io.BytesIO(data[: end + 1]), parse_options=options)
    return table.select(schema.names).cast(schema)


def read_parts(paths: list[Path], schema: pa.Schema) -> pa.Table:
    """All parts in name (= start) order, so a later row of the same item comes later.

    Raises ``pyarrow.ArrowInvalid`` for a damaged part (callers decide what it costs).
    """
    tables = [read_part(p, schema) for p in paths]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def remove_parts(folder: Path, name: str, paths: list[Path]) -> None:
    """Delete merged parts (this stage wrote them) and the folder once it is empty."""
    for path in paths:
        path.unlink(missing_ok=True)
    try:
        parts_dir(folder, name).rmdir()
    except OSError:
        pass  # not empty: a live writer's part stays
