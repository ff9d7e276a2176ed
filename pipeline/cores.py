"""What ``workers: 0`` means in every stage: one process per core this process may run on.

The CPU affinity, not ``os.cpu_count()``: a container or ``taskset`` limited to 4 of 64
cores must not start 64 processes.
"""

from __future__ import annotations

import os


def worker_count(workers: int) -> int:
    """``workers``, or the usable core count when it is 0."""
    return workers or len(os.sched_getaffinity(0))
