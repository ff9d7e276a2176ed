"""Cropping every clip of a table: parallel ffmpeg workers, checks, manifest rows.

Each clip is independent: a missing, corrupt or short source fails that clip with a
reason in the manifest and the others go on. Outputs are written under temporary names
and renamed only after the frame count has been verified, so a file under its final
name is always complete.
"""

from __future__ import annotations

import contextlib
import threading
import time
import wave
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fomm_core.atomic import atomic_path
from pipeline.ids import safe_join
from pipeline.video_files import METADATA_FPS, SourceVideo, find_source

from .ffmpeg_job import (
    OUTPUT_FPS, SAMPLES_PER_FRAME, CropJob, EncodeSettings, build_command, last_line,
    looks_corrupt, run_command,
)
from .geometry import crop_box, scale_box
from .probe import ProbeError, SourceInfo, count_video_frames, probe
from .table import Clip, ClipResult

REASONS = ("not_downloaded", "corrupt", "past_end", "no_audio", "ffmpeg_error")


@dataclass(frozen=True)
class CropOptions:
    """What the run needs besides the clips (a view of ``CropConfig``)."""

    encode: EncodeSettings
    square: bool = True
    increase_area: float = 0.1
    require_audio: bool = True
    max_missing_frames: int = 0
    workers: int = 2


class _ProbeCache:
    """ffprobe once per source file, however many clips (and threads) ask for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, Future] = {}

    def get(self, path: Path) -> SourceInfo:
        with self._lock:
            future = self._entries.get(path)
            owner = future is None
            if owner:
                future = Future()
                self._entries[path] = future
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


def crop_clip(clip: Clip, videos: Path, out: Path, options: CropOptions,
              probes: _ProbeCache | None = None) -> ClipResult:
    """Crop one clip into ``out/{partition}/{clip_id}.mp4/.wav``; never raises for bad media."""
    result = _crop_clip(clip, videos, out, options, probes)
    _remove_stale(clip, out, result)
    return result


def _crop_clip(clip: Clip, videos: Path, out: Path, options: CropOptions,
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
    pixels = crop_box(scale_box(clip.box, clip.width, clip.height, info.width, info.height),
                      info.width, info.height, options.square, options.increase_area)
    result.crop = pixels.as_box()
    if not info.has_audio and options.require_audio:
        result.reason = "no_audio"
        return result
    seek = clip.start / METADATA_FPS - source.offset_seconds
    end_time = clip.end / METADATA_FPS - source.offset_seconds
    if info.duration is not None and seek >= info.duration:
        result.reason, result.detail = "past_end", f"starts at {seek:.2f} s, video is {info.duration:.2f} s"
        return result
    job = CropJob(source.path, seek, clip.num_frames, pixels, with_audio=info.has_audio)
    video_path = safe_join(out, clip.partition, f"{clip.clip_id}.mp4")
    audio_path = safe_join(out, clip.partition, f"{clip.clip_id}.wav")
    try:
        with contextlib.ExitStack() as stack:
            tmp_video = stack.enter_context(atomic_path(video_path))
            tmp_audio = stack.enter_context(atomic_path(audio_path)) if job.with_audio else None
            frames = _encode(job, options, tmp_video, tmp_audio, end_time, info, result)
    except _Discard:
        return result
    result.status, result.num_frames, result.fps = "ok", frames, float(OUTPUT_FPS)
    result.video = video_path.relative_to(out).as_posix()
    if job.with_audio:
        result.audio = audio_path.relative_to(out).as_posix()
    else:
        result.reason = "no_audio"  # kept (require_audio is false), with no WAV
    return result


def _remove_stale(clip: Clip, out: Path, result: ClipResult) -> None:
    """Outputs of an earlier run that this run did not remake: the folder must match the manifest."""
    if not result.ok:
        safe_join(out, clip.partition, f"{clip.clip_id}.mp4").unlink(missing_ok=True)
    if not result.audio:
        safe_join(out, clip.partition, f"{clip.clip_id}.wav").unlink(missing_ok=True)


def _encode(job: CropJob, options: CropOptions, tmp_video: Path, tmp_audio: Path | None,
            end_time: float, info: SourceInfo, result: ClipResult) -> int:
    """Run ffmpeg into the temp files and check them; raise :class:`_Discard` on failure."""
    cmd = build_command(job, options.encode, tmp_video, tmp_audio)
    ran = run_command(cmd, _ffmpeg_timeout(job.num_frames))
    if ran.returncode != 0:
        result.reason = "corrupt" if looks_corrupt(ran.stderr) else "ffmpeg_error"
        result.detail = last_line(ran.stderr)
        raise _Discard
    frames = ran.frames if ran.frames is not None else count_video_frames(tmp_video)
    if frames == 0 or frames < job.num_frames - options.max_missing_frames:
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
    """Everything the stage summary needs."""

    results: list[ClipResult]
    seconds: float

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.ok

    @property
    def frames(self) -> int:
        return sum(r.num_frames for r in self.results if r.ok)

    def failure_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.results:
            if not r.ok:
                counts[r.reason] = counts.get(r.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary_line(self) -> str:
        failures = self.failure_counts()
        detail = f" ({', '.join(f'{k} {v}' for k, v in failures.items())})" if failures else ""
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (f"crop: {self.ok} ok, {self.failed} failed{detail} of {len(self.results)} clips; "
                f"{self.frames} frames in {self.seconds:.1f} s ({rate:.0f} frames/s)")


def crop_all(clips: list[Clip], videos: Path, out: Path, options: CropOptions,
             on_done: Callable[[ClipResult], None] | None = None) -> CropReport:
    """Crop ``clips`` with ``options.workers`` ffmpeg processes at a time; results in input order."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    probes = _ProbeCache()
    results: list[ClipResult | None] = [None] * len(clips)
    with ThreadPoolExecutor(max_workers=max(1, options.workers), thread_name_prefix="crop") as pool:
        futures = {pool.submit(crop_clip, clip, videos, out, options, probes): i
                   for i, clip in enumerate(clips)}
        try:
            for future in as_completed(futures):
                result = future.result()
                results[futures[future]] = result
                if on_done is not None:
                    on_done(result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return CropReport([r for r in results if r is not None], time.perf_counter() - started)
