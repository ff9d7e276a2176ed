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
        try:
            fcntl.lockf(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a filesystem without locks: merges then treat the part as finished
            pass
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
    """Whether another live process holds the part's lock (this process's own never counts).

    POSIX locks belong to the process and closing any descriptor of the file drops them:
    never call this (or read a part) on a part this process is still writing.
    """
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


def _complete_length(path: Path) -> int:
    """Bytes up to and including the last newline (what a kill may leave after it is torn)."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - 65536)
            handle.seek(start)
            block = handle.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            end = start
    return 0


class _Prefix(io.RawIOBase):
    """The first ``length`` bytes of a file, streamed (the JSON reader never sees a torn line)."""

    def __init__(self, path: Path, length: int) -> None:
        self._handle, self._left = open(path, "rb"), length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)[: self._left]
        count = self._handle.readinto(view)
        self._left -= count
        return count

    def close(self) -> None:
        self._handle.close()
        super().close()


def read_part(path: Path, schema: pa.Schema) -> pa.Table:
    """The complete lines of one part as a table of ``schema``, read as a stream of blocks."""
    length = _complete_length(path)
    if length == 0:
        return schema.empty_table()
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    with _Prefix(path, length) as raw:
        reader = pa_json.open_json(io.BufferedReader(raw, 1 << 20), parse_options=options,
                                   read_options=pa_json.ReadOptions(block_size=1 << 20))
        table = reader.read_all()
    # The parser's block buffers are freed, but the allocator keeps them mapped unless asked:
    # without this, reading a 1.1M-row journal costs twice its table in resident memory.
    pa.default_memory_pool().release_unused()
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
