"""One video: extract, download into ``DIR/.partial/{id}/``, then rename into place.

Files appear under their final names only when complete (``os.replace`` on one file
system), so "the final file exists" is what "done" means on a resumed run. yt-dlp's own
``.part`` files stay in the work dir between attempts and runs, so a cut transfer resumes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yt_dlp
from yt_dlp.utils import DownloadCancelled, make_archive_id

from pipeline.ids import safe_join
from pipeline.video_files import METADATA_FPS, section_path, whole_video_path

from .archive import Archive, ArchiveCapture
from .config import DownloadConfig
from .errors import Failure
from .jobs import VideoJob
from .report import ReportRow
from .retry import Backoff, with_retries
from .ytdlp_options import YtdlpLogger, build_params

log = logging.getLogger(__name__)
ytdlp_log = logging.getLogger("pipeline.download.ytdlp")

PARTIAL_DIR = ".partial"


class IncompleteResult(Exception):
    """yt-dlp returned without the files we asked for (classified as ``other``, retried)."""


def missing_sections(job: VideoJob, out_dir: Path, mode: str) -> list[tuple[int, int]]:
    """What is still to fetch: ``[]`` when done; in whole mode ``[(0, 0)]`` stands for the file."""
    if whole_video_path(out_dir, job.video_id).is_file():
        return []
    if mode == "whole":
        return [(0, 0)]
    return [s for s in job.sections if not section_path(out_dir, job.video_id, *s).is_file()]


def final_paths(job: VideoJob, out_dir: Path, mode: str) -> list[Path]:
    whole = whole_video_path(out_dir, job.video_id)
    if mode == "whole" or whole.is_file():
        return [whole]
    return [section_path(out_dir, job.video_id, *s) for s in job.sections]


def files_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


@dataclass
class Attempted:
    """What one successful attempt produced."""

    bytes: int
    archive_ids: set[str] = field(default_factory=set)


class VideoDownloader:
    """Downloads jobs one at a time; a pool runs one per thread, each with fresh YoutubeDLs."""

    def __init__(self, config: DownloadConfig, out_dir: Path, archive: Archive,
                 stop: threading.Event, cookies: Path | None = None) -> None:
        self.config, self.out_dir, self.archive, self.stop = config, out_dir, archive, stop
        self.cookies = cookies
        self.backoff = Backoff(config.backoff_base, config.backoff_max, config.jitter)

    def work_dir(self, video_id: str) -> Path:
        return safe_join(self.out_dir, PARTIAL_DIR, video_id)

    def run(self, job: VideoJob) -> tuple[ReportRow, int]:
        """Fetch what is missing of ``job``, retrying transient failures; never raises for them.

        Returns the report row and the bytes this run added to ``DIR``.
        """
        started = time.monotonic()

        def on_failure(number: int, failure: Failure, wait: float | None) -> None:
            action = "giving up" if wait is None else f"retrying in {wait:.2f} s"
            log.info("%s: attempt %d failed (%s): %s; %s", job.video_id, number, failure.reason, failure.message, action)

        outcome = with_retries(
            lambda number: self._attempt(job, number),
            retries=self.config.retries, backoff=self.backoff, stop=self.stop, on_failure=on_failure,
        )
        seconds = round(time.monotonic() - started, 3)
        if outcome.failure is None:
            assert outcome.value is not None
            self.archive.add(outcome.value.archive_ids)
            shutil.rmtree(self.work_dir(job.video_id), ignore_errors=True)
            size = files_size(final_paths(job, self.out_dir, self.config.mode))
            log.info("%s: ok after %d attempt(s), %d bytes", job.video_id, outcome.attempts, size)
            row = ReportRow(job.video_id, "ok", "", outcome.attempts, size, seconds, job.url, "")
            return row, outcome.value.bytes
        failure = outcome.failure
        work = self.work_dir(job.video_id)
        if not failure.transient:
            shutil.rmtree(work, ignore_errors=True)  # nothing worth resuming
        elif work.is_dir() and not any(work.iterdir()):
            work.rmdir()
        status = "failed" if failure.transient else "skipped"
        log.warning("%s: %s (%s): %s", job.video_id, status, failure.reason, failure.message)
        row = ReportRow(job.video_id, status, failure.reason, outcome.attempts, 0, seconds, job.url, failure.message)
        return row, 0

    def _progress_hook(self, _status: dict) -> None:
        if self.stop.is_set():
            raise DownloadCancelled("stopped by the user")

    def _attempt(self, job: VideoJob, number: int) -> Attempted:
        if self.stop.is_set():
            raise DownloadCancelled("stopped by the user")
        todo = missing_sections(job, self.out_dir, self.config.mode)  # again: a retry may need less
        if not todo:
            return Attempted(0)
        work = self.work_dir(job.video_id)
        work.mkdir(parents=True, exist_ok=True)
        sections = None if self.config.mode == "whole" or todo == [(0, 0)] else todo
        capture = ArchiveCapture()
        cookiefile = None
        if self.cookies is not None:
            # yt-dlp writes the cookie jar back on close; give each instance its own copy so
            # parallel workers never write the user's file (or each other's).
            cookiefile = work / f".cookies-{threading.get_ident()}-{number}.txt"
            shutil.copyfile(self.cookies, cookiefile)
        params = build_params(
            self.config, job.kind, work, YtdlpLogger(ytdlp_log, job.video_id),
            sections=sections, archive=capture, cookiefile=cookiefile, progress_hook=self._progress_hook,
        )
        try:
            with yt_dlp.YoutubeDL(params) as ydl:
                info = ydl.extract_info(job.fetch_url, download=True)
        finally:
            if cookiefile is not None:
                cookiefile.unlink(missing_ok=True)
        downloads = (info or {}).get("requested_downloads") or []
        produced = [Path(d["filepath"]) for d in downloads if d.get("filepath")]
        if sections is None:
            if len(produced) != 1 or not produced[0].is_file():
                raise IncompleteResult(f"yt-dlp produced {len(produced)} files for {job.url}, expected 1")
            moves = [(produced[0], whole_video_path(self.out_dir, job.video_id))]
        else:
            if len(produced) != len(sections) or not all(p.is_file() for p in produced):
                raise IncompleteResult(f"yt-dlp produced {len(produced)} sections for {job.url}, expected {len(sections)}")
            moves = []
            for (start, end), download, path in zip(sections, downloads, produced):
                got = download.get("section_start")
                if got is None or abs(float(got) - start / METADATA_FPS) > 1e-3:
                    raise IncompleteResult(f"section order mismatch: got start {got}, expected {start / METADATA_FPS}")
                moves.append((path, section_path(self.out_dir, job.video_id, start, end)))
        for source, _ in moves:
            if source.suffix != ".mp4" or source.stat().st_size == 0:
                raise IncompleteResult(f"yt-dlp produced {source.name}, not a non-empty mp4")
        total = 0
        for source, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            total += source.stat().st_size
            os.replace(source, target)
        ids = set(capture)
        if not ids and info and info.get("extractor_key") and info.get("id"):
            ids = {make_archive_id(info["extractor_key"], info["id"])}
        return Attempted(total, ids)
