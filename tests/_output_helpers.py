"""Output-path and resource helpers: an immutable folder (root ignores chmod 0o555, not
`chattr +i`), and the peak memory of one `fomm` command."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def immutable_folder(path: Path) -> Iterator[Path]:
    """``path`` created and made immutable (nothing can be created in it, even by root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# `fomm ARGS`, writing its own peak RSS (VmHWM, counted from exec) to PEAK_RSS_FILE at exit:
# a parent's wait4 ru_maxrss would include the forked copy of the (large) pytest process.
PEAK_RSS_WRAPPER = """
import atexit, os, sys
def report():
    with open(os.environ["PEAK_RSS_FILE"], "w") as out:
        out.write(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
atexit.register(report)
sys.argv = ["fomm", *sys.argv[1:]]
from pipeline.cli import main
main()
"""


def run_fomm_measured(args: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, int]:
    """(the finished `fomm ARGS` process, its peak RSS in MB)."""
    peak = cwd / ".peak-rss"
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, *args], cwd=cwd, capture_output=True,
                          text=True, env={**env, "PEAK_RSS_FILE": str(peak)}, timeout=600)
    return done, int(peak.read_text()) // 1024
