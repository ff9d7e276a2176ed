"""All videos' tubes: the jobs, a process pool over them, resuming, and the two tables.

Jobs are (person, video) groups of the clips table. Each finished job writes its own part
file, so a killed run loses at most the videos in flight; the next run reuses every part
whose fingerprint matches and computes the rest. The final tables are streamed from the
parts in job order (clip ids sort the same way), never held whole in memory.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError
from pipeline.cores import worker_count
from pipeline.crop.table import read_clips
from pipeline.lifecycle import die_with_parent
from pipeline.local_urls import is_relative_url, rebase
from pipeline.metadata.build import kind_of
from pipeline.metadata.tables import CLIPS_SCHEMA, REJECTS_SCHEMA

from .config import TubesConfig
from .references import reference_tracks
from .video import InputClip, VideoJob, part_is_current, part_path, run_job

PARTS = "parts"


@dataclass
class TubesReport:
    jobs: int = 0
    resumed: int = 0
    input_clips: int = 0
    kept: int = 0
    rejected: int = 0
    sampled: int = 0
    video_seconds: float = 0.0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)
    partitions: Counter = field(default_factory=Counter)
    mode: str = "detect"

    def summary_line(self) -> str:
        if self.mode == "passthrough":
            return f"tubes: passed {self.kept} clips through unchanged (tubes.mode / a vox-metadata CSV input)"
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        minutes = self.video_seconds / 60
        rate = f"; {self.seconds / minutes:.1f} s per video-minute" if minutes > 0 and self.resumed < self.jobs else ""
        return (f"tubes: {self.kept} tubes ({self.partitions['train']} train / {self.partitions['test']} test) "
                f"from {self.input_clips} clips of {self.jobs} videos ({self.resumed} resumed); rejected "
                f"{self.rejected}{f' ({why})' if why else ''}; {self.sampled} frames detected in {self.seconds:.1f} s{rate}")


def detects(config: TubesConfig, input_kind: str) -> bool:
    if config.mode == "passthrough":
        return False
    return config.mode == "detect" or input_kind != "csv"


def _input_clips(frame: pd.DataFrame) -> Iterator[tuple[tuple[str, str], list[InputClip]]]:
    """(person, video) groups of the clips table, in clip-id order."""
    ordered = frame.sort_values("clip_id", kind="stable")
    for (person, video), rows in ordered.groupby(["person_id", "video_id"], sort=True):
        yield (person, video), [
            InputClip(r.clip_id, r.partition, int(r.start), int(r.end),
                      (float(r.left), float(r.top), float(r.right), float(r.bottom)), float(r.width), float(r.height),
                      str(r.url), str(r.source))
            for r in rows.itertuples(index=False)
        ]


def make_jobs(frame: pd.DataFrame, annotations: Path | None) -> Iterator[VideoJob]:
    """One job per (person, video); txt groups carry each utterance's reference track."""
    groups = dict(_input_clips(frame))  # one small list per video, not per frame
    if annotations is not None:
        for key, tracks in reference_tracks(annotations, set(groups)):
            clips = groups.pop(key)
            yield VideoJob(key[0], key[1], tuple(dataclasses.replace(c, reference=tracks.get(c.clip_id))
                                                 for c in clips), True)
    for key, clips in sorted(groups.items()):
        yield VideoJob(key[0], key[1], tuple(clips), False)


def rebased_urls(urls: pd.Series, table_folder: Path, out: Path) -> pd.Series:
    """Relative urls stay relative to the table holding them (pipeline/local_urls.py): re-anchored on ``out``."""
    moved = {u: rebase(u, table_folder, out) for u in pd.unique(urls) if isinstance(u, str) and is_relative_url(u)}
    return urls.map(lambda u: moved.get(u, u)) if moved else urls


def run_tubes(clips_path: Path, videos: Path, metadata_input: Path, out: Path, config: TubesConfig,
              on_done: Callable[[], None] | None = None, on_total: Callable[[int], None] | None = None) -> TubesReport:
    """Write ``out/clips.parquet`` and ``out/rejects.parquet`` (and ``out/parts/``)."""
    started = time.perf_counter()
    read_clips(clips_path)  # validates every row (ids, frames, boxes) with a one-line error
    frame = pd.read_parquet(clips_path)
    for column in ("url", "source"):
        if column not in frame.columns:
            raise FommError(f"{clips_path}: missing column {column}; expected the metadata stage's clips table")
    frame["url"] = rebased_urls(frame["url"], clips_path.parent, out)
    input_kind = kind_of(metadata_input)
    report = TubesReport(input_clips=len(frame))
    if not detects(config, input_kind):
        report.mode = "passthrough"
        table = pa.Table.from_pandas(frame[CLIPS_SCHEMA.names], schema=CLIPS_SCHEMA, preserve_index=False)
        _write(table, out / "clips.parquet")
        _write(REJECTS_SCHEMA.empty_table(), out / "rejects.parquet")
        shutil.rmtree(out / PARTS, ignore_errors=True)
        report.kept = len(frame)
        report.partitions.update(frame["partition"])
        return report
    annotations = metadata_input if input_kind in ("tree", "zip") else None
    parts = out / PARTS
    keys = sorted(frame.groupby(["person_id", "video_id"]).groups)
    report.jobs = len(keys)
    if on_total is not None:
        on_total(len(keys))
    workers = worker_count(config.workers)
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
        pending: set = set()
        try:
            for job in make_jobs(frame, annotations):  # streamed: tracks of a few videos in memory at a time
                if part_is_current(job, parts, config):
                    report.resumed += 1
                    if on_done is not None:
                        on_done()
                    continue
                pending.add(pool.submit(run_job, job, videos, parts, config))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    _collect(done, report, on_done)
            done, pending = wait(pending)
            _collect(done, report, on_done)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    _assemble(keys, parts, out, report)
    _remove_stale_parts(keys, parts)
    report.seconds = time.perf_counter() - started
    return report


def _collect(done, report: TubesReport, on_done) -> None:
    for future in done:
        _, _, sampled, seconds = future.result()
        report.sampled += sampled
        report.video_seconds += seconds
        if on_done is not None:
            on_done()


def _write(table: pa.Table, target: Path) -> None:
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def _assemble(keys: list[tuple[str, str]], parts: Path, out: Path, report: TubesReport) -> None:
    """Stream every part into the two tables, in (person, video) order (= clip id order)."""
    with atomic_path(out / "clips.parquet") as clips_tmp, atomic_path(out / "rejects.parquet") as rejects_tmp:
        with pq.ParquetWriter(clips_tmp, CLIPS_SCHEMA) as clips, pq.ParquetWriter(rejects_tmp, REJECTS_SCHEMA) as rejects:
            for person, video in keys:
                kept = pq.read_table(part_path(parts, person, video, "clips")).replace_schema_metadata(None)
                dropped = pq.read_table(part_path(parts, person, video, "rejects")).replace_schema_metadata(None)
                clips.write_table(kept)
                rejects.write_table(dropped)
                report.kept += kept.num_rows
                report.rejected += dropped.num_rows
                report.partitions.update(kept.column("partition").to_pylist())
                report.reasons.update(dropped.column("reason").to_pylist())


def _remove_stale_parts(keys: list[tuple[str, str]], parts: Path) -> None:
    """Parts of videos no longer in the clips table (the folder mirrors the current input)."""
    if not parts.is_dir():
        return
    wanted = {part_path(parts, p, v, kind) for p, v in keys for kind in ("clips", "rejects")}
    for video_dir in parts.iterdir():
        if not video_dir.is_dir():
            continue
        for part in video_dir.iterdir():
            if part.name.endswith(".parquet") and part not in wanted:
                part.unlink()
        if not any(video_dir.iterdir()):
            video_dir.rmdir()
