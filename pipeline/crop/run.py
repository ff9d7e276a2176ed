"""Cropping the clips of a table: a bounded queue of ffmpeg jobs, checks, journalled rows.

Each clip is independent: a missing, corrupt or short source fails that clip with a
reason in the manifest and the others go on. Outputs are written under temporary names
and renamed only after the frame count has been verified, so a file under its final
name is always complete; its manifest row is journalled right after. A clip whose
recorded settings key matches and whose files exist is skipped, so a killed or repeated
run redoes only the clips that were in flight.

Memory is flat in the number of clips: the table stays in Arrow columns, at most
``2 * workers`` clips are submitted at a time, and results go to the journal, not a list.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import wave
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError
from fomm_core.outputs import claim_output_dir
from pipeline.ids import safe_join
from pipeline.video_files import METADATA_FPS, SourceVideo, find_source

from .config import CropConfig, settings_key
from .ffmpeg_job import (
    OUTPUT_FPS, SAMPLES_PER_FRAME, CropJob, build_command, last_line, looks_corrupt, run_command,
)
from .geometry import crop_box, lies_outside, scale_box
from .manifest import MANIFEST_NAME, ClipResult, Finished, ManifestJournal, latest_rows, merge_manifest
from .probe import ProbeError, SourceInfo, count_video_frames, probe
from .table import BATCH_ROWS, Clip, ClipTable, read_clips

REASONS = ("not_downloaded", "corrupt", "outside_frame", "past_end", "no_audio", "ffmpeg_error")
SHOW_FAILURES = 5  # failures kept for the console; the manifest has them all


class _ProbeCache:
    """ffprobe once per source file while its clips are cropped (a bounded LRU: the table is
    sorted by clip id, so one video's clips come together)."""

    def __init__(self, size: int = 256) -> None:
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Path, Future] = collections.OrderedDict()
        self._size = size

    def get(self, path: Path) -> SourceInfo:
        with self._lock:
            future = self._entries.get(path)
            owner = future is None
            if owner:
                future = Future()
                self._entries[path] = future
                while len(self._entries) > self._size:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(path)
        if owner:
            try:
                future.set_result(probe(path))
            except ProbeError as exc:
                future.set_exception(exc)
        return future.result()


def _ffmpeg_timeout(num_frames: int) -> float:
    return 120.0 + 5.0 * num_frames / OUTPUT_FPS


def _truncate_wav(path: Path, samples: int) -> None:
    """Cut a WAV to ``samples`` (when fewer video frames than asked were accepted)."""
    with wave.open(str(path), "rb") as reader:
        params = reader.getparams()
        data = reader.readframes(samples)
    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(data)


def output_paths(clip: Clip, out: Path) -> tuple[Path, Path]:
    return (safe_join(out, clip.partition, f"{clip.clip_id}.mp4"),
            safe_join(out, clip.partition, f"{clip.clip_id}.wav"))


def crop_clip(clip: Clip, videos: Path, out: Path, config: CropConfig, settings: str = "",
              probes: _ProbeCache | None = None) -> ClipResult:
    """Crop one clip into ``out/{partition}/{clip_id}.mp4/.wav``; never raises for bad media.

    A clip that fails loses the files an earlier run made for it (they were made with
    other settings, or the run would have skipped the clip): the folder matches the manifest.
    """
    result = _crop_clip(clip, videos, out, config, probes)
    result.settings = settings
    video_path, audio_path = output_paths(clip, out)
    if not result.ok:
        video_path.unlink(missing_ok=True)
    if not result.audio:
        audio_path.unlink(missing_ok=True)
    return result


def _crop_clip(clip: Clip, videos: Path, out: Path, config: CropConfig,
               probes: _ProbeCache | None) -> ClipResult:
    result = ClipResult(clip)
    source: SourceVideo | None = find_source(videos, clip.video_id, clip.start, clip.end)
    if source is None:
        result.reason = "not_downloaded"
        return result
    try:
        info = probes.get(source.path) if probes is not None else probe(source.path)
    except ProbeError as exc:
        result.reason, result.detail = "corrupt", str(exc)
        return result
    result.src_width, result.src_height = info.width, info.height
    scaled = scale_box(clip.box, clip.width, clip.height, info.width, info.height)
    if lies_outside(scaled, info.width, info.height):
        # Cropping would shift the box to the frame edge and show background, not a face.
        result.reason = "outside_frame"
        result.detail = f"box {scaled.left:.0f},{scaled.top:.0f},{scaled.right:.0f},{scaled.bottom:.0f} " \
                        f"lies outside the {info.width}x{info.height} frame"
        return result
    pixels = crop_box(scaled, info.width, info.height, config.square, config.increase_area)
    result.crop = pixels.as_box()
    if not info.has_audio and config.require_audio:
        result.reason = "no_audio"
        return result
    seek = clip.start / METADATA_FPS - source.offset_seconds
    end_time = clip.end / METADATA_FPS - source.offset_seconds
    if info.duration is not None and seek >= info.duration:
        result.reason, result.detail = "past_end", f"starts at {seek:.2f} s, video is {info.duration:.2f} s"
        return result
    job = CropJob(source.path, seek, clip.num_frames, pixels, with_audio=info.has_audio)
    video_path, audio_path = output_paths(clip, out)
    try:
        with contextlib.ExitStack() as stack:
            tmp_video = stack.enter_context(atomic_path(video_path))
            tmp_audio = stack.enter_context(atomic_path(audio_path)) if job.with_audio else None
            frames = _encode(job, config, tmp_video, tmp_audio, end_time, info, result)
    except _Discard:
        return result
    result.status, result.num_frames, result.fps = "ok", frames, float(OUTPUT_FPS)
    result.video = video_path.relative_to(out).as_posix()
    if job.with_audio:
        result.audio = audio_path.relative_to(out).as_posix()
    else:
        result.reason = "no_audio"  # kept (require_audio is false), with no WAV
    return result


def _encode(job: CropJob, config: CropConfig, tmp_video: Path, tmp_audio: Path | None,
            end_time: float, info: SourceInfo, result: ClipResult) -> int:
    """Run ffmpeg into the temp files and check them; raise :class:`_Discard` on failure."""
    cmd = build_command(job, config.encode, tmp_video, tmp_audio)
    ran = run_command(cmd, _ffmpeg_timeout(job.num_frames))
    if ran.returncode != 0:
        result.reason = "corrupt" if looks_corrupt(ran.stderr) else "ffmpeg_error"
        result.detail = last_line(ran.stderr)
        raise _Discard
    frames = ran.frames if ran.frames is not None else count_video_frames(tmp_video)
    if frames == 0 or frames < job.num_frames - config.max_missing_frames:
        # The container says the clip lies inside the video, yet frames are missing: damage.
        inside = info.duration is not None and end_time <= info.duration - 1.0 / OUTPUT_FPS
        result.reason = "corrupt" if inside or looks_corrupt(ran.stderr) else "past_end"
        result.detail = f"{frames} of {job.num_frames} frames decoded"
        raise _Discard
    if tmp_audio is not None and frames < job.num_frames:
        _truncate_wav(tmp_audio, frames * SAMPLES_PER_FRAME)
    return frames


class _Discard(Exception):
    """Raised inside the temp-file contexts so they delete their files."""


@dataclass
class CropReport:
    """Counts over the clips of one run (not the clips themselves: 1.1M would not fit)."""

    clips: int = 0
    ok: int = 0
    already_done: int = 0
    frames: int = 0  # encoded by this run
    failures: collections.Counter = field(default_factory=collections.Counter)
    first_failures: list[ClipResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def add(self, result: ClipResult) -> None:
        self.clips += 1
        if result.ok:
            self.ok += 1
            self.frames += result.num_frames
            return
        self.failures[result.reason] += 1
        if len(self.first_failures) < SHOW_FAILURES:
            self.first_failures.append(result)

    def skip(self) -> None:
        self.clips += 1
        self.ok += 1
        self.already_done += 1

    def failure_counts(self) -> dict[str, int]:
        return dict(sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary_line(self, label: str = "crop") -> str:
        failures = self.failure_counts()
        detail = f" ({', '.join(f'{k} {v}' for k, v in failures.items())})" if failures else ""
        done = f" ({self.already_done} already done)" if self.already_done else ""
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (f"{label}: {self.ok} ok{done}, {self.failed} failed{detail} of {self.clips} clips; "
                f"{self.frames} frames in {self.seconds:.1f} s ({rate:.0f} frames/s)")


def _has_outputs(clip: Clip, out: Path, with_audio: bool) -> bool:
    video, audio = output_paths(clip, out)
    return video.is_file() and (not with_audio or audio.is_file())


def crop_all(table: ClipTable, videos: Path, out: Path, config: CropConfig, part: tuple[int, int] = (1, 1),
             on_done: Callable[[], None] | None = None) -> CropReport:
    """Crop share ``part`` (K, N) of ``table`` into ``out``, ``config.worker_count()`` at a time.

    Rows go to this process's journal part as clips finish; the caller merges the
    manifest (:func:`pipeline.crop.manifest.merge_manifest`).
    """
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rows = table.part_rows(*part)
    finished = Finished.from_rows(latest_rows(out, ["clip_id", "status", "settings", "audio"]))
    positions = finished.positions(table.clip_ids().take(pa.array(rows)))
    stage_settings = config.output_settings()
    workers = config.worker_count()
    probes = _ProbeCache()
    report = CropReport()
    with ManifestJournal(out) as journal, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crop") as pool:
        in_flight: set[Future] = set()

        def collect() -> None:
            """Journal the clips that finished (at least one): their rows survive a kill."""
            nonlocal in_flight
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                journal.add(result)
                report.add(result)
                if on_done is not None:
                    on_done()

        try:
            for offset in range(0, len(rows), BATCH_ROWS):
                recorded, with_audio = finished.recorded(positions[offset: offset + BATCH_ROWS])
                for i, clip in enumerate(table.clips(rows[offset: offset + BATCH_ROWS])):
                    key = settings_key(stage_settings, clip.fields())
                    if recorded[i] == key and _has_outputs(clip, out, with_audio[i]):
                        report.skip()
                        if on_done is not None:
                            on_done()
                        continue
                    while len(in_flight) >= 2 * workers:
                        collect()
                    in_flight.add(pool.submit(crop_clip, clip, videos, out, config, key, probes))
            while in_flight:
                collect()
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class CropOutcome:
    """What the command reports: this run's counts, and the merged manifest's (if merged)."""

    report: CropReport
    manifest_rows: int | None = None  # None: a --part run, the manifest was not merged
    not_in_table: int = 0  # manifest rows of earlier runs for clips this table does not have
    missing: int = 0  # (--merge) clips of the table without a row yet


def parse_part(text: str | None) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) as ``(K, N)``; None is the whole table."""
    if text is None:
        return 1, 1
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise FommError(f"--part {text!r}: expected K/N, e.g. 3/16 (share 3 of 16)") from None
    if not 1 <= part <= parts:
        raise FommError(f"--part {text!r}: K must be between 1 and N")
    return part, parts


def _merge(out: Path, table: ClipTable) -> tuple[int, int, int]:
    manifest_ids = merge_manifest(out)
    in_table = pc.is_in(manifest_ids, value_set=table.clip_ids().combine_chunks())
    covered = pc.is_in(table.clip_ids(), value_set=manifest_ids.combine_chunks())
    not_in_table = len(manifest_ids) - (pc.sum(in_table).as_py() or 0)
    missing = len(table) - (pc.sum(covered).as_py() or 0)
    return len(manifest_ids), not_in_table, missing


def run_crop(clips: Path, videos: Path, out: Path, config: CropConfig, part: tuple[int, int] = (1, 1),
             merge_only: bool = False, on_done: Callable[[], None] | None = None,
             on_total: Callable[[int], None] | None = None) -> CropOutcome:
    """The whole stage: check everything, crop this run's share, merge the manifest.

    ``part != (1, 1)`` crops one share and leaves its rows in a journal part (other
    machines may be writing theirs); ``merge_only`` crops nothing and merges all parts.
    """
    table = read_clips(clips)
    if not merge_only and not videos.is_dir():
        raise FommError(f"{videos}: videos directory not found; run `fomm download` first or pass --videos")
    out = claim_output_dir(out, "crop", inputs=[clips, videos], legacy=[MANIFEST_NAME])
    if merge_only:
        return CropOutcome(CropReport(), *_merge(out, table))
    if on_total is not None:
        on_total(len(table.part_rows(*part)))
    report = crop_all(table, videos, out, config, part, on_done)
    if part != (1, 1):
        return CropOutcome(report)
    return CropOutcome(report, *_merge(out, table))
