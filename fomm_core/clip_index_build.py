"""Writing the shard index: ``index.parquet`` and its column file ``index.cols``.

Validation and encoding use pyarrow, which readers never import (see :mod:`fomm_core.clip_index`
for the layout and why). Everything a reader would otherwise compute over all rows is done
here once: sorted dictionaries, each partition's rows, the pairable clips grouped by person and
the clip ids' sort order. ~80 bytes per clip on disk.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import atomic_path
from .clip_index import (
    _HEAD, COMPACT_INDEX, FEATURES_SUBDIR, FORMAT, INDEX, MAGIC, ClipEntry, aligned,
    unsafe_relative_path,
)
from .digest import sha256_of_file
from .errors import FommError

INDEX_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("person_id", pa.string()), ("video_id", pa.string()),
    ("partition", pa.string()), ("shard", pa.string()), ("row_start", pa.int64()),
    ("row_end", pa.int64()), ("num_frames", pa.int32()), ("fps", pa.float64()),
    ("image_format", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
    ("features", pa.string()), ("has_groundtruth", pa.bool_()),
])
_DICTIONARY_COLUMNS = ("person_id", "video_id", "partition", "shard", "image_format")


def validated(table: pa.Table, where: str) -> dict[str, pa.Array]:
    """Index rows (any order) as one array per ``ClipEntry`` field, checked for what readers rely on.

    No nulls, ``row_end == row_start + num_frames``, plain clip ids and partitions, and paths that
    stay inside the shard folder.
    """
    names = [f.name for f in fields(ClipEntry)]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise FommError(f"{where}: missing column(s) {', '.join(missing)}; re-run `dvc repro shard`")

    def bad(what: str) -> FommError:
        return FommError(f"{where}: {what}; re-run `dvc repro shard`")

    columns: dict[str, pa.Array] = {}
    for name in names:
        column = table.column(name).combine_chunks()
        if column.null_count:
            raise bad(f"column {name} has empty values")
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        columns[name] = column
    try:
        for name in ("row_start", "row_end"):
            columns[name] = columns[name].cast(pa.int64())
        for name in ("num_frames", "height", "width"):
            columns[name] = columns[name].cast(pa.int32())
        for name in ("clip_id", "person_id", "video_id", "partition", "shard", "image_format", "features"):
            columns[name] = columns[name].cast(pa.string())
        columns["fps"] = columns["fps"].cast(pa.float64())
        columns["has_groundtruth"] = columns["has_groundtruth"].cast(pa.bool_())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise bad(str(exc)) from None
    if len(table):
        ends = pc.add(columns["row_start"], columns["num_frames"].cast(pa.int64()))
        if not pc.all(pc.equal(ends, columns["row_end"])).as_py():
            raise bad("row_end != row_start + num_frames")
        for name in ("row_start", "num_frames", "height", "width"):
            if pc.min(columns[name]).as_py() < 0:
                raise bad(f"negative {name}")
        for values in (columns["clip_id"], columns["partition"]):
            if (pc.any(pc.match_substring(values, "/")).as_py() or pc.any(pc.match_substring(values, "\\")).as_py()
                    or pc.any(pc.starts_with(values, ".")).as_py() or pc.any(pc.equal(values, "")).as_py()):
                raise bad("a clip_id or partition is not a plain name")
    _check_paths(columns["shard"], "shard", where)
    return columns


def _check_paths(paths: pa.Array, what: str, where: str) -> None:
    for rel in pc.unique(paths).to_pylist():
        if unsafe_relative_path(rel):
            raise FommError(f"{where}: {what} path {rel!r} leaves the shard folder; re-run `dvc repro shard`")


def _fit(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the narrowest unsigned type that holds them."""
    top = int(values.max()) if len(values) else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values.astype(np.uint64)


def _string_parts(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A ``large_string`` array as (offsets, UTF-8 bytes), offsets starting at 0."""
    values = values.cast(pa.large_string())
    if len(values) == 0:
        return np.zeros(1, np.uint8), np.zeros(0, np.uint8)
    offsets = np.frombuffer(values.buffers()[1], np.int64)[values.offset:values.offset + len(values) + 1]
    data = values.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    data = data[offsets[0]:offsets[-1]]
    return _fit(offsets - offsets[0]), data


def _codes(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Codes into the sorted distinct values (so code order is name order), and those values."""
    dictionary = pc.unique(values)
    dictionary = dictionary.take(pc.array_sort_indices(dictionary))
    codes = pc.index_in(values, value_set=dictionary)
    return _fit(np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)), dictionary


def encode(rows: pa.Table, where: str, parquet_sha: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The header fields and columns of ``index.cols`` for validated ``rows``."""
    columns = validated(rows, where)
    arrays: dict[str, np.ndarray] = {"empty": np.zeros(0, np.uint8)}

    def put_strings(name: str, values: pa.Array) -> None:
        arrays[f"{name}.offsets"], arrays[f"{name}.data"] = _string_parts(values)

    put_strings("clip_id", columns["clip_id"])
    decoded: dict[str, np.ndarray] = {}
    dictionaries: dict[str, list[str]] = {}
    for name in _DICTIONARY_COLUMNS:
        codes, dictionary = _codes(columns[name])
        arrays[f"{name}.codes"] = decoded[name] = codes
        put_strings(f"{name}.dict", dictionary)
        if name == "partition":
            dictionaries[name] = dictionary.to_pylist()
    num_frames = np.asarray(columns["num_frames"].to_numpy(zero_copy_only=False), np.int64)
    arrays["row_start"] = _fit(np.asarray(columns["row_start"].to_numpy(zero_copy_only=False), np.int64))
    arrays["num_frames"] = _fit(num_frames)
    arrays["fps"] = np.asarray(columns["fps"].to_numpy(zero_copy_only=False), np.float64)
    for name in ("height", "width"):
        arrays[name] = _fit(np.asarray(columns[name].to_numpy(zero_copy_only=False), np.int64))
    arrays["has_groundtruth"] = np.asarray(columns["has_groundtruth"].to_numpy(zero_copy_only=False), np.uint8)
    arrays["clip_id.sorted"] = _fit(np.asarray(pc.sort_indices(columns["clip_id"]).to_numpy(), np.int64))

    canonical = pc.binary_join_element_wise(
        FEATURES_SUBDIR, columns["partition"], pc.binary_join_element_wise(columns["clip_id"], "npz", "."), "/")
    keep_features = bool(len(rows)) and not pc.all(pc.equal(columns["features"], canonical)).as_py()
    if keep_features:  # canonical paths are safe: clip ids and partitions are plain names
        _check_paths(columns["features"], "features", where)
        put_strings("features", columns["features"])

    person, partition = decoded["person_id"], decoded["partition"]
    for code in range(len(dictionaries["partition"])):
        part = np.flatnonzero(partition == code)
        pairable = part[num_frames[part] >= 2]
        key = person[pairable]
        order = np.argsort(key, kind="stable")
        people, counts = np.unique(key[order], return_counts=True)
        arrays[f"part.{code}.rows"] = _fit(part)
        arrays[f"part.{code}.pairable"] = _fit(pairable)
        arrays[f"part.{code}.by_person"] = _fit(pairable[order])
        arrays[f"part.{code}.people"] = _fit(people)
        arrays[f"part.{code}.starts"] = _fit(np.concatenate([[0], np.cumsum(counts)]))
    meta = {"format": FORMAT, "rows": len(rows), "parquet_sha256": parquet_sha,
            "features": "column" if keep_features else "canonical", "partitions": dictionaries["partition"]}
    return meta, arrays


def write_columns(sink: BinaryIO, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """The ``index.cols`` layout: magic, header length, JSON header, 64-byte aligned columns."""
    little = {name: np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<"), copy=False))
              for name, values in arrays.items()}
    layout, position = {}, 0
    for name, values in little.items():
        layout[name] = [values.dtype.str, position, len(values)]
        position = aligned(position + values.nbytes)
    header = json.dumps({**meta, "columns": layout}, separators=(",", ":")).encode()
    head = _HEAD.pack(MAGIC, len(header)) + header
    sink.write(head + bytes(aligned(len(head)) - len(head)))
    written = 0
    for name, values in little.items():
        sink.write(bytes(layout[name][1] - written))
        sink.write(values.tobytes())
        written = layout[name][1] + values.nbytes


def write_index(root: str | os.PathLike, rows: pa.Table) -> None:
    """Publish ``index.cols`` then ``index.parquet`` (each renamed into place; the Parquet last).

    ``rows`` has ``INDEX_SCHEMA``'s columns in the order readers should see the clips. The
    column file records the SHA-256 of the Parquet file it goes with, so any later change to
    ``index.parquet`` (a rebuild, a hand edit) makes readers ignore the stale column file.
    Rows that fail validation raise before anything is published.
    """
    root = Path(root)
    rows = rows.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
    with atomic_path(root / INDEX) as parquet_tmp:
        pq.write_table(rows, parquet_tmp, compression="zstd")
        meta, arrays = encode(rows, str(root / INDEX), sha256_of_file(parquet_tmp))
        with atomic_path(root / COMPACT_INDEX) as cols_tmp:
            with open(cols_tmp, "wb") as sink:
                write_columns(sink, meta, arrays)


def encode_parquet(path: Path) -> bytes:
    """``index.cols`` for an ``index.parquet`` that has none (older or hand-made), in memory."""
    try:
        rows = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FommError(f"{path}: not a readable Parquet file ({exc}); re-run `dvc repro shard`") from None
    meta, arrays = encode(rows, str(path), sha256_of_file(path))
    sink = io.BytesIO()
    write_columns(sink, meta, arrays)
    return sink.getvalue()
