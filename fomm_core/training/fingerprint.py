"""A cheap identity of a shard folder, to tag which data a model was trained on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def shards_fingerprint(root: str | os.PathLike) -> str:
    """sha256 over ``index.parquet``'s bytes and the names, sizes and mtimes of the shard files.

    Reading the (small) index and only stat-ing the (large) shards keeps this instant. The
    modification time is needed: stored PNG frames keep a shard's size when a crop setting
    changes its pixels. A copy of the same shards (``dvc checkout``) therefore counts as new
    data, which errs on the safe side: a checkpoint is continued only on the shards it saw.
    """
    root = Path(root)
    digest = hashlib.sha256()
    digest.update((root / "index.parquet").read_bytes())
    shard_dir = root / "shards"
    for path in sorted(shard_dir.glob("*.parquet")) if shard_dir.is_dir() else []:
        stat = path.stat()
        digest.update(f"\n{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
