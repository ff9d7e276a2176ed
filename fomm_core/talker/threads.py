"""Running the talker's many tiny operations on one CPU thread.

An autoregressive rollout is thousands of small matrix products; splitting each over
several threads costs more in synchronisation than it saves, and on a busy machine (other
processes on the same cores) the threads' barriers stall: a rollout measured 300x slower
with 2 threads than with 1 on a loaded 2-core machine. Training, evaluation and streaming
generation therefore run inside :func:`limited_threads` (``threads: 0`` leaves torch's own
setting), which restores the caller's setting afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """At most ``threads`` intra-op threads inside the block (0: unchanged)."""
    before = torch.get_num_threads()
    if threads <= 0 or threads >= before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
