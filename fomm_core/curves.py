"""Loss curves as small append-only TSV files, written during training (for ``dvc plots``).

A header ``step<TAB>name...``, then one row per log point: the step and each value (the
mean since the previous row) as ``%.6g``; a value the loop did not compute at that point
is an empty cell. Rows are appended and flushed as they come through one open file, never
rewritten, so a killed run keeps its curve up to the kill; a resumed run first cuts the
rows after the step it resumes at, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Mapping, Sequence

from .atomic import write_text_atomic


class LossCurve:
    """One curve file. ``columns`` fixes the value columns; None takes the first row's keys."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] | None = None):
        self.path = Path(path)
        self.columns = list(columns) if columns is not None else None
        self._file: IO[str] | None = None
        self._needs_header = True

    def start(self) -> None:
        """Begin a new curve, replacing this run's earlier file if there is one."""
        known = self.columns is not None
        write_text_atomic(self.path, "step\t" + "\t".join(self.columns) + "\n" if known else "")
        self._open(needs_header=not known)

    def resume(self, step: int) -> str | None:
        """Continue the file of a run resumed at ``step``: rows after it are cut off.

        Returns a one-line note when the file is missing or has other columns and the
        curve therefore starts anew at ``step``.
        """
        keep = self._bytes_through(step)
        if keep is None:
            self.start()
            return f"{self.path.name}: no earlier curve to continue; it starts at step {step}"
        with self.path.open("r+b") as f:
            f.truncate(keep)
        self._open(needs_header=keep == 0)
        return None

    def append(self, step: int, values: Mapping[str, float]) -> None:
        if self._file is None:
            raise RuntimeError("LossCurve.append before start() or resume()")
        if self._needs_header:
            if self.columns is None:
                self.columns = list(values)
            self._file.write("step\t" + "\t".join(self.columns) + "\n")
            self._needs_header = False
        cells = ("" if values.get(name) is None else f"{values[name]:.6g}" for name in self.columns)
        self._file.write(f"{step}\t" + "\t".join(cells) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, needs_header: bool) -> None:
        self._file = self.path.open("a", encoding="utf-8")
        self._needs_header = needs_header

    def _bytes_through(self, step: int) -> int | None:
        """Size of the file up to its last complete row at or before ``step``; None if unusable.

        Reads the file once (resumes are rare); stops at the first later, partial or
        unreadable row, which is where a kill left it.
        """
        if not self.path.is_file():
            return None
        with self.path.open("rb") as f:
            header = f.readline()
            if header == b"":
                return 0  # killed before its first row: the header comes with it
            if not header.endswith(b"\n") or not header.startswith(b"step\t"):
                return None
            columns = header.decode("utf-8").rstrip("\n").split("\t")[1:]
            if self.columns is not None and columns != self.columns:
                return None
            self.columns = columns
            keep = f.tell()
            for line in f:
                try:
                    row_step = int(line.split(b"\t", 1)[0])
                except ValueError:
                    break
                if not line.endswith(b"\n") or row_step > step:
                    break
                keep += len(line)
        return keep
