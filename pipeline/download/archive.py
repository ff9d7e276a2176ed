"""``DIR/archive.txt``: yt-dlp's download-archive file, written only for finished videos.

yt-dlp computes the archive ids (``youtube <id>``, ``generic <name>``) into an in-memory
set we give it; :class:`Archive` appends them once the video's files are in place, so a
killed run never leaves the archive claiming a video that is not there.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


class ArchiveCapture(set):
    """The set yt-dlp adds archive ids to (passed as ``download_archive``)."""


class Archive:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def entries(self) -> set[str]:
        if not self.path.is_file():
            return set()
        return {line.strip() for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()}

    def add(self, ids: set[str] | list[str]) -> None:
        with self._lock:
            new = sorted(set(ids) - self.entries())
            if not new:
                return
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(f"{entry}\n" for entry in new))
                handle.flush()
                os.fsync(handle.fileno())
