"""A cheap identity of a shard folder, to tag which data a model was trained on.

It decides whether a persistent checkpoint may be resumed (``fomm train`` under DVC), so it
must change whenever the pixels change and must not change when the same shards are merely
copied or checked out again (new mtimes, another folder).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..shard_file import read_clip_table


def shards_fingerprint(root: str | os.PathLike) -> str:
    """sha256 over ``index.parquet``'s bytes and each shard's name, size and content key.

    Every shard file records the key it was built from (its clips' manifest rows, the sizes
    of their crops, the encoding settings and code: ``fomm_core.shard_file``), read from the
    shard's small tail section; the (large) frames are never read, so this stays instant.
    Sizes alone are not enough: stored PNG frames keep their size when a crop setting
    changes their pixels.
    """
    root = Path(root)
    digest = hashlib.sha256()
    digest.update((root / "index.parquet").read_bytes())
    shard_dir = root / "shards"
    for path in sorted(shard_dir.glob("shard-*")) if shard_dir.is_dir() else []:
        table = read_clip_table(path) or {}
        digest.update(f"\n{path.name}:{path.stat().st_size}:{table.get('key', '')}".encode())
    return digest.hexdigest()
