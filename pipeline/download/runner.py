"""The whole stage: plan jobs, skip finished videos, download the rest on N threads.

The report is written every few seconds and always at the end (also on Ctrl-C or an
unexpected error), so an interrupted run still records what it finished.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fomm_core.errors import FommError
from pipeline.progress import progress_bar

from .archive import Archive
from .config import DownloadConfig
from .jobs import VideoJob, plan_jobs, read_clips
from .report import ReportRow, read_report, write_report
from .worker import VideoDownloader, files_size, final_paths, missing_sections

log = logging.getLogger("pipeline.download")

REPORT_NAME = "report.parquet"
ARCHIVE_NAME = "archive.txt"
LOG_NAME = "download.log"
SNAPSHOT_EVERY_S = 1.0  # report rewrites at most this often (a kill loses less)


@dataclass
class RunResult:
    rows: list[ReportRow]
    new_bytes: int
    seconds: float
    already_done: int

    @property
    def ok(self) -> int:
        return sum(1 for row in self.rows if row.status == "ok")


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


def _done_row(job: VideoJob, previous: ReportRow | None, out_dir: Path, mode: str) -> ReportRow:
    """A finished video keeps its previous ok row (attempts unchanged) or gets a fresh one."""
    if previous is not None and previous.status == "ok":
        return previous
    size = files_size(final_paths(job, out_dir, mode))
    return ReportRow(job.video_id, "ok", "", 0, size, 0.0, job.url, "")


def run_download(config: DownloadConfig, clips: Path, out_dir: Path, show_progress: bool = True) -> RunResult:
    """Download every video of ``clips`` into ``out_dir``; returns the rows of the report."""
    started = time.monotonic()
    jobs = plan_jobs(read_clips(clips), clips, config.allow_file_urls)
    cookies = _cookies(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / REPORT_NAME
    previous = read_report(report_path)
    rows: dict[str, ReportRow] = {}
    todo: list[VideoJob] = []
    for job in jobs:
        if missing_sections(job, out_dir, config.mode):
            todo.append(job)
        else:
            rows[job.video_id] = _done_row(job, previous.get(job.video_id), out_dir, config.mode)
    already_done = len(rows)
    new_bytes = 0

    def snapshot() -> list[ReportRow]:
        """This run's rows so far; videos not reached yet keep their previous row, if any."""
        ordered = [rows.get(job.video_id) or previous.get(job.video_id) for job in jobs]
        present = [row for row in ordered if row is not None]
        write_report(report_path, present)
        return present

    stop = threading.Event()
    downloader = VideoDownloader(config, out_dir, Archive(out_dir / ARCHIVE_NAME), stop, cookies)
    progress = progress_bar() if show_progress else contextlib.nullcontext()
    finished = False
    with log_to_file(out_dir), progress as bar:
        task = bar.add_task("download", total=len(jobs), completed=already_done) if bar is not None else None
        log.info("run: %d videos, %d already done, %d to fetch (mode %s, %d workers)",
                 len(jobs), already_done, len(todo), config.mode, config.workers)
        executor = ThreadPoolExecutor(max_workers=max(1, min(config.workers, len(todo))), thread_name_prefix="download")
        pending: set[Future] = {executor.submit(downloader.run, job) for job in todo}
        last_write = float("-inf")
        try:
            while pending:
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    row, added = future.result()
                    rows[row.video_id] = row
                    new_bytes += added
                    if task is not None:
                        bar.advance(task)
                if done and time.monotonic() - last_write > SNAPSHOT_EVERY_S:
                    snapshot()
                    last_write = time.monotonic()
            finished = True
        except BaseException:
            stop.set()  # running attempts stop at their next progress callback
            for future in pending:
                future.cancel()
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            if not finished:
                for future in pending:
                    if future.done() and not future.cancelled() and future.exception() is None:
                        row, _ = future.result()
                        if row.status == "ok":  # a stopped attempt is not a real failure
                            rows[row.video_id] = row
            final_rows = snapshot()
            partial = out_dir / ".partial"
            with contextlib.suppress(OSError):
                partial.rmdir()  # only when empty: leftovers are resumable .part files
    return RunResult(final_rows, new_bytes, round(time.monotonic() - started, 3), already_done)
