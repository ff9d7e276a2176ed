"""SHA-256 of a file, read in 1 MB blocks (memory flat in its size).

Kept free of torch and pyarrow so the data loader, the shard stage and MLflow tracking can
all use it without paying for the others' imports.
"""

from __future__ import annotations

import hashlib
import os

_BLOCK = 1 << 20


def sha256_of_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
