"""The clip-encoding process pool: workers die with the stage, and a failure stops the queue."""

from __future__ import annotations

import contextlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

from pipeline.lifecycle import die_with_parent


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` fresh (spawned) processes, each killed when the stage dies.

    Spawned rather than forked: the parent holds pyarrow's thread pools, and a fork taken while
    one of their locks is held can hang the child. On any error the queued clips are cancelled
    (those running finish, so their spills are whole), and the error propagates.
    """
    pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
