"""The whole stage: plan jobs, skip finished videos, download the rest on N threads.

Each finished video appends its report row to a journal part at once; the Parquet report
is merged at the end (also on Ctrl-C or an unexpected error), and a killed run's part is
merged by the next run, so nothing finished is ever forgotten.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from fomm_core.errors import FommError
from fomm_core.outputs import claim_output_dir
from pipeline.progress import progress_bar

from .archive import Archive
from .config import DownloadConfig
from .jobs import VideoJob, plan_jobs, read_clips
from .report import REPORT_NAME, ReportJournal, ReportRow, load_rows, merge_report, rows_of
from .worker import VideoDownloader, files_size, final_paths, missing_sections

log = logging.getLogger("pipeline.download")

ARCHIVE_NAME = "archive.txt"
LOG_NAME = "download.log"
__all__ = ["ARCHIVE_NAME", "LOG_NAME", "REPORT_NAME", "RunResult", "run_download"]


@dataclass
class RunResult:
    report: pd.DataFrame  # the rows written to report.parquet, in clips-table order
    new_bytes: int
    seconds: float
    already_done: int
    not_retried: int = 0  # permanent failures of earlier runs left alone

    @property
    def ok(self) -> int:
        return int((self.report["status"] == "ok").sum())

    @property
    def rows(self) -> list[ReportRow]:
        return rows_of(self.report)


@contextlib.contextmanager
def log_to_file(out_dir: Path) -> Iterator[None]:
    """Send this stage's log (and yt-dlp's warnings) to ``DIR/download.log``, not the console."""
    handler = logging.FileHandler(out_dir / LOG_NAME, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate
        handler.close()


def _cookies(config: DownloadConfig) -> Path | None:
    if not config.cookies:
        return None
    path = Path(config.cookies)
    if not path.is_file():
        raise FommError(f"download.cookies: cookies file {path} not found; export it in Netscape format or set cookies: ''")
    return path


@dataclass
class Plan:
    """What a run has to do, decided from the files present and the previous report."""

    todo: list[VideoJob]
    already_done: int
    not_retried: int


def plan_run(jobs: list[VideoJob], out_dir: Path, config: DownloadConfig, previous: pd.DataFrame,
             journal: ReportJournal) -> Plan:
    """Split ``jobs`` into finished (files present), given up (permanent failure) and to fetch.

    One ``stat`` and two dict look-ups per video: no request for a video whose files are
    there, nor for one whose last failure was permanent (404, private, ...) at the same
    URL, unless ``retry_failed``. A finished video without an ok row gets one.
    """
    status = dict(zip(previous["video_id"], previous["status"]))
    url = dict(zip(previous["video_id"], previous["url"]))
    todo: list[VideoJob] = []
    done = given_up = 0
    for job in jobs:
        if not missing_sections(job, out_dir, config.mode):
            done += 1
            if status.get(job.video_id) != "ok":
                size = files_size(final_paths(job, out_dir, config.mode))
                journal.add(ReportRow(job.video_id, "ok", "", 0, size, 0.0, job.url, ""))
        elif status.get(job.video_id) == "skipped" and url.get(job.video_id) == job.url and not config.retry_failed:
            given_up += 1
        else:
            todo.append(job)
    return Plan(todo, done, given_up)


def run_download(config: DownloadConfig, clips: Path, out_dir: Path, show_progress: bool = True) -> RunResult:
    """Download every video of ``clips`` into ``out_dir``; returns the report."""
    started = time.monotonic()
    jobs = plan_jobs(read_clips(clips), clips, config.allow_file_urls, with_sections=config.mode == "sections")
    cookies = _cookies(config)
    out_dir = claim_output_dir(out_dir, "download", inputs=[clips, cookies],
                               legacy=[REPORT_NAME, ARCHIVE_NAME, LOG_NAME])
    new_bytes = 0
    stop = threading.Event()
    downloader = VideoDownloader(config, out_dir, Archive(out_dir / ARCHIVE_NAME), stop, cookies)
    progress = progress_bar() if show_progress else contextlib.nullcontext()
    previous = load_rows(out_dir)  # before our own part exists: reading it would drop its lock
    with ReportJournal(out_dir) as journal:
        try:
            plan = plan_run(jobs, out_dir, config, previous, journal)
            del previous
            workers = config.worker_count()
            with log_to_file(out_dir), progress as bar:
                task = None
                if bar is not None:
                    task = bar.add_task("download", total=len(jobs), completed=len(jobs) - len(plan.todo))
                log.info("run: %d videos, %d already done, %d permanent failures not retried, %d to fetch "
                         "(mode %s, %d workers)", len(jobs), plan.already_done, plan.not_retried,
                         len(plan.todo), config.mode, workers)

                def on_row(row: ReportRow, added: int) -> None:
                    nonlocal new_bytes
                    journal.add(row)
                    new_bytes += added
                    if task is not None:
                        bar.advance(task)

                _fetch(downloader, plan.todo, workers, stop, on_row)
        finally:
            journal.close()
            report = merge_report(out_dir, [job.video_id for job in jobs])
            with contextlib.suppress(OSError):
                (out_dir / ".partial").rmdir()  # only when empty: leftovers are resumable .part files
    return RunResult(report, new_bytes, round(time.monotonic() - started, 3), plan.already_done, plan.not_retried)


def _fetch(downloader: VideoDownloader, todo: list[VideoJob], workers: int, stop: threading.Event,
           on_row: Callable[[ReportRow, int], None]) -> None:
    """Download ``todo``, at most ``2 * workers`` submitted at a time; ``on_row`` as each finishes.

    On Ctrl-C (or any error) running attempts stop at their next progress callback; a
    stopped attempt's failure is not recorded (it was not a real failure), a success is.
    """
    if not todo:
        return
    executor = ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo))), thread_name_prefix="download")
    pending: set[Future] = set()
    jobs = iter(todo)
    try:
        while True:
            for job in itertools.islice(jobs, max(0, 2 * workers - len(pending))):
                pending.add(executor.submit(downloader.run, job))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                on_row(*future.result())
    except BaseException:
        stop.set()
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)
        for future in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                row, added = future.result()
                if row.status == "ok":
                    on_row(row, added)
        raise
    executor.shutdown(wait=True)
