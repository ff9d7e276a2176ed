"""The clip-encoding process pool: workers die with the stage, and a failure stops the queue."""

from __future__ import annotations

import contextlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

from pipeline.lifecycle import die_with_parent


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes forked from the stage, each killed when the stage dies.

    Forked, because the alternatives do not die with the stage or cost too much: a spawned
    worker re-imports the ``fomm`` script's module (every stage and torch: ~5 s and ~300 MB
    each), and a fork server's workers are the server's children and keep it, and themselves,
    alive after the stage is killed. The workers only run OpenCV, numpy, scipy and ffmpeg, never
    pyarrow, whose threads the stage holds. On any error the queued clips are cancelled (those
    running finish, so their spills are whole) and the error propagates.
    """
    pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("fork"),
                               initializer=die_with_parent)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
