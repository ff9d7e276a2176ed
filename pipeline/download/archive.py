"""``DIR/archive.txt``: yt-dlp's download-archive file, written only for finished videos.

yt-dlp computes the archive ids (``youtube <id>``, ``generic <name>``) into an in-memory
set we give it; :class:`Archive` appends them once the video's files are in place, so a
killed run never leaves the archive claiming a video that is not there. The file is read
once per run: each append is O(1), not a re-read of 150k lines.
"""

from __future__ import annotations

import threading
from pathlib import Path


class ArchiveCapture(set):
    """The set yt-dlp adds archive ids to (passed as ``download_archive``)."""


class Archive:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._known: set[str] | None = None  # read on the first add

    def entries(self) -> set[str]:
        if not self.path.is_file():
            return set()
        with open(self.path, encoding="utf-8") as handle:
            return {line.strip() for line in handle if line.strip()}

    def add(self, ids: set[str] | list[str]) -> None:
        with self._lock:
            if self._known is None:
                self._known = self.entries()
            new = sorted(set(ids) - self._known)
            if not new:
                return
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(f"{entry}\n" for entry in new))
            self._known.update(new)
