"""A cheap identity of a shard folder, to tag which data a model was trained on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def shards_fingerprint(root: str | os.PathLike) -> str:
    """sha256 over ``index.parquet``'s bytes and the names and sizes of the shard files.

    Reading the (small) index and only stat-ing the (large) shards keeps this instant; a
    re-encoded shard changes its size or the index, so it changes the hash in practice.
    """
    root = Path(root)
    digest = hashlib.sha256()
    digest.update((root / "index.parquet").read_bytes())
    shard_dir = root / "shards"
    for path in sorted(shard_dir.glob("shard-*")) if shard_dir.is_dir() else []:  # .frames (and older .parquet)
        digest.update(f"\n{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()
