"""Output-path and resource helpers: an immutable folder (root ignores chmod 0o555, not
`chattr +i`), and the peak memory of one `fomm` command."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _peak_rss import run_fomm_with_peak_rss  # noqa: E402


@contextlib.contextmanager
def immutable_folder(path: Path) -> Iterator[Path]:
    """``path`` created and made immutable (nothing can be created in it, even by root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def run_fomm_measured(args: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, int]:
    """(the finished `fomm ARGS` process, its peak RSS in MB), as the benchmarks measure it."""
    done, peak_mb, _ = run_fomm_with_peak_rss(args, cwd, env, timeout=600)
    return done, int(peak_mb)
