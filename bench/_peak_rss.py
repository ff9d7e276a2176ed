"""Peak memory of one `fomm` command, measured by the command itself.

The child writes its own VmHWM (counted from exec) at exit: a parent's ``ru_maxrss`` would
include the forked copy of the (large) parent before exec. Shared by the benchmarks and the
tests that bound memory.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

WRAPPER = """
import atexit, os, sys
def report():
    with open(os.environ["PEAK_RSS_FILE"], "w") as out:
        out.write(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
atexit.register(report)
sys.argv = ["fomm", *sys.argv[1:]]
from pipeline.cli import main
main()
"""


def run_fomm_with_peak_rss(args: list[str], cwd: Path, env: dict,
                           timeout: float | None = None) -> tuple[subprocess.CompletedProcess, float, float]:
    """(the finished `fomm ARGS` process, its peak RSS in MB, wall seconds)."""
    peak_file = cwd / ".peak-rss"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=cwd, capture_output=True, text=True,
                          env={**env, "PEAK_RSS_FILE": str(peak_file)}, timeout=timeout)
    return done, int(peak_file.read_text()) / 1024, time.perf_counter() - started
