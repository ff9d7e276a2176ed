"""The shard stage's work: encode clips in parallel, assemble shards in order, publish the index.

Clips are encoded by a pool of processes, each clip to its own spill (``.spill/{clip_id}``, a
one-clip shard file). The main process assembles a shard as soon as all its clips are spilled
(kernel copy of the frame bytes, then rename) and deletes the spills. So the output folder is
written in place, a re-run keeps finished shards and spills whose key still matches
(:mod:`.plan`) and redoes only the clips that were being encoded, and at most a few shards'
worth of spills exist at once. ``index.parquet`` is published last, after every shard of the
plan is finished; until then the folder has no index and readers refuse it.

Output bytes are a function of the input alone (the plan ignores timing, worker count and
``--part``), so a rerun or a differently split run writes byte-identical files.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from fomm_core.atomic import atomic_path
from fomm_core.clip_index import COMPACT_INDEX, FEATURES_SUBDIR, INDEX, LEGACY_COMPACT_INDEX, features_path
from fomm_core.clip_index_build import INDEX_SCHEMA, write_index
from fomm_core.errors import FommError
from fomm_core.shard_file import SUFFIX, ShardFile, ShardFileWriter, read_clip_table

from .clip import ClipTask, encode_clip
from .config import ShardConfig
from .manifest import Manifest
from .plan import SHARDS_SUBDIR, SPILL_SUBDIR, Job, Part, clip_key, code_version, plan_jobs, shard_key
from .workers import worker_pool

# Shards whose clips may be submitted before the earliest unfinished one is assembled: keeps
# every worker busy across shard boundaries while bounding the spills on disk.
OPEN_SHARDS_AHEAD = 2


@dataclass
class ShardResult:
    clips: int = 0
    frames: int = 0
    shards: int = 0
    bytes: int = 0
    skipped: int = 0  # manifest rows whose status is not ok
    encoded: int = 0  # clips encoded by this run
    reused: int = 0  # clips kept from an earlier run (finished shard or spill)
    with_groundtruth: int = 0
    missing: int = 0  # shards of the plan not finished (other parts still running)
    published: bool = False
    seconds: float = 0.0


@dataclass
class _Context:
    config: ShardConfig
    manifest: Manifest
    out: Path
    groundtruth: Path | None
    code: str
    result: ShardResult
    advance: Callable[[int], None]

    unpublished: bool = False
    shard_keys: dict[int, str] = field(default_factory=dict)  # computed once per run

    def spill_path(self, clip_id: str) -> Path:
        return self.out / SPILL_SUBDIR / f"{clip_id}{SUFFIX}"  # ids and partitions are validated names

    def unpublish(self) -> None:
        """Shards are about to change: take the index away first, so no reader mixes old and new."""
        if not self.unpublished:
            (self.out / INDEX).unlink(missing_ok=True)
            (self.out / COMPACT_INDEX).unlink(missing_ok=True)
            (self.out / LEGACY_COMPACT_INDEX).unlink(missing_ok=True)  # an older fomm shard's
            self.unpublished = True


@dataclass
class _Shard:
    """A shard being built: its clips, their keys, and how many are spilled."""

    job: Job
    clip_ids: list[str]
    key: str
    spilled: int = 0
    tasks: list[ClipTask] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.spilled == len(self.clip_ids)


def _plan_shard(ctx: _Context, job: Job) -> tuple[list[ClipTask], str]:
    clips = ctx.manifest.rows(job.first, job.count)
    tasks = []
    for clip in clips:
        rel = features_path(clip.partition, clip.clip_id)
        tasks.append(ClipTask(
            clip=clip, key=clip_key(clip, ctx.manifest.clips_dir, ctx.groundtruth, ctx.config, ctx.code),
            where=clip.where(ctx.manifest.clips_dir), spill=ctx.spill_path(clip.clip_id),
            features=ctx.spill_path(clip.clip_id).with_suffix(".npz"),
            features_rel=rel, groundtruth=ctx.groundtruth, config=ctx.config,
        ))
    key = ctx.shard_keys[job.number] = shard_key([t.key for t in tasks])
    return tasks, key


def _finished(path: Path, key: str) -> bool:
    table = read_clip_table(path)
    return table is not None and table.get("key") == key


def _assemble(ctx: _Context, shard: _Shard) -> None:
    """Move the shard's NPZs into features/, concatenate its spills (in plan order) into the shard
    file, then drop the spills. Until the first assembly a failed run leaves the old output as it was.

    Crash-safe in this order: a spill whose NPZ was already moved still counts as finished
    (its key matches), and the move is simply not repeated.
    """
    ctx.unpublish()
    for task in shard.tasks:
        if task.features.exists():
            target = ctx.out / task.features_rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(task.features, target)
    final = ctx.out / shard.job.name
    rows: list[dict] = []
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as sink:
            writer = ShardFileWriter(sink)
            for clip_id in shard.clip_ids:
                with ShardFile(ctx.spill_path(clip_id)) as spill:
                    (row,) = spill.clips()["clips"]
                    start = writer.num_frames
                    writer.copy_frames(spill)
                row.update(shard=shard.job.name, row_start=start, row_end=writer.num_frames)
                rows.append(row)
            writer.finish(shard.key, rows)
            sink.flush()
            os.fsync(sink.fileno())
    for clip_id in shard.clip_ids:
        ctx.spill_path(clip_id).unlink(missing_ok=True)


def _build(ctx: _Context, jobs: list[Job]) -> None:
    """Encode and assemble ``jobs`` (in order), keeping finished shards and spills."""
    pending_jobs: Iterator[Job] = iter(jobs)
    open_shards: deque[_Shard] = deque()
    queue: deque[tuple[_Shard, ClipTask]] = deque()
    in_flight: dict[Future, _Shard] = {}
    jobs_left = True
    workers = ctx.config.worker_count()
    with worker_pool(workers) as pool:
        while True:
            # Pull shards until enough clips are queued to keep every worker busy.
            while jobs_left and len(queue) < 2 * workers and len(open_shards) <= OPEN_SHARDS_AHEAD:
                job = next(pending_jobs, None)
                if job is None:
                    jobs_left = False
                    break
                tasks, key = _plan_shard(ctx, job)
                if _finished(ctx.out / job.name, key):
                    ctx.result.reused += len(tasks)
                    ctx.advance(len(tasks))
                    continue
                shard = _Shard(job, [t.clip.clip_id for t in tasks], key, tasks=tasks)
                open_shards.append(shard)
                for task in tasks:
                    if _finished(task.spill, task.key):
                        shard.spilled += 1
                        ctx.result.reused += 1
                        ctx.advance(1)
                    else:
                        queue.append((shard, task))
            while queue and len(in_flight) < 2 * workers:
                shard, task = queue.popleft()
                in_flight[pool.submit(encode_clip, task)] = shard
            while open_shards and open_shards[0].complete:
                _assemble(ctx, open_shards.popleft())
            if not in_flight:
                if not queue and not open_shards and not jobs_left:
                    return
                continue
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                shard = in_flight.pop(future)
                future.result()  # a worker's FommError stops the run here (finished work is kept)
                shard.spilled += 1
                ctx.result.encoded += 1
                ctx.advance(1)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_stale(ctx: _Context, jobs: list[Job], index: pa.Table) -> None:
    """Shards, spills and features of an earlier plan that the new index no longer lists."""
    planned = {job.name.split("/", 1)[1] for job in jobs}
    shard_dir = ctx.out / SHARDS_SUBDIR
    for entry in os.scandir(shard_dir) if shard_dir.is_dir() else ():
        if entry.is_file() and entry.name.startswith("shard-") and entry.name.endswith((SUFFIX, ".parquet")) \
                and entry.name not in planned:  # (.parquet: shards of the format before this one)
            _unlink(entry.path)
    spill_dir = ctx.out / SPILL_SUBDIR
    if spill_dir.is_dir():
        for entry in os.scandir(spill_dir):
            if entry.is_file() and entry.name.endswith((SUFFIX, ".npz")):
                _unlink(entry.path)  # another part may be removing its own right now
        try:
            spill_dir.rmdir()
        except OSError:  # another part's temporaries still there
            pass
    features = ctx.out / FEATURES_SUBDIR
    if not features.is_dir():
        return
    for partition in os.scandir(features):
        if not partition.is_dir():
            continue
        names = [e.name for e in os.scandir(partition.path) if e.is_file() and e.name.endswith(".npz")]
        if not names:
            continue
        wanted = pc.binary_join_element_wise(
            index.filter(pc.equal(index["partition"], partition.name))["clip_id"], "npz", ".")
        keep = pc.is_in(pa.array(names, pa.string()), value_set=wanted.combine_chunks()).to_pylist()
        for name, kept in zip(names, keep):
            if not kept:
                _unlink(os.path.join(partition.path, name))


def _publish(ctx: _Context, jobs: list[Job], must: bool) -> None:
    """Check every shard of the plan and write the index; with ``must``, missing shards are an error."""
    tables, missing, result = [], [], ctx.result
    for job in jobs:
        key = ctx.shard_keys.get(job.number) or _plan_shard(ctx, job)[1]
        path = ctx.out / job.name
        table = read_clip_table(path)
        if table is None or table.get("key") != key:
            missing.append(job.name)
            continue
        tables.append(pa.Table.from_pylist(table["clips"], schema=INDEX_SCHEMA))
        result.bytes += path.stat().st_size
    if missing:
        result.missing = len(missing)
        if must:
            raise FommError(
                f"{ctx.out}: {len(missing)} of {len(jobs)} shards are missing or were made from other input "
                f"(first: {missing[0]}); run the parts that own them (fomm shard --part K/N) before --merge")
        return
    index = pa.concat_tables(tables)
    _remove_stale(ctx, jobs, index)
    write_index(ctx.out, index)
    result.published = True
    result.shards = len(jobs)
    result.clips = len(index)
    result.frames = pc.sum(index["num_frames"]).as_py() or 0
    result.with_groundtruth = pc.sum(index["has_groundtruth"].cast(pa.int64())).as_py() or 0


def _all_present(out: Path, jobs: list[Job]) -> bool:
    shard_dir = out / SHARDS_SUBDIR
    present = {e.name for e in os.scandir(shard_dir)} if shard_dir.is_dir() else set()
    return all(job.name.split("/", 1)[1] in present for job in jobs)


@dataclass
class ShardPlan:
    """The whole plan and the shards this run does (``part``), checked before anything is written."""

    manifest: Manifest
    jobs: list[Job]
    mine: list[Job]
    part: Part | None
    merge: bool

    @property
    def clips(self) -> int:
        return sum(job.count for job in self.mine)


def plan_run(config: ShardConfig, clips_dir: Path, part: Part | None = None, merge: bool = False) -> ShardPlan:
    """Read and check the manifest, and check the files of this run's clips exist (fail before writing)."""
    manifest = Manifest(clips_dir)
    if not len(manifest):
        raise FommError(f"{clips_dir / 'manifest.parquet'}: no clips with status ok; check fomm crop's output")
    jobs = plan_jobs(manifest.frame_counts(), config.frames_per_shard)
    mine = [] if merge else [job for job in jobs if part is None or part.owns(job.number)]
    for job in mine:
        manifest.rows(job.first, job.count)
    return ShardPlan(manifest, jobs, mine, part, merge)


def shard_clips(plan: ShardPlan, config: ShardConfig, out: Path, groundtruth: Path | None,
                advance: Callable[[int], None] | None = None) -> ShardResult:
    """Shard ``plan.mine`` into ``out`` (claimed by the caller) and publish the index when whole.

    The index is published by whichever run finds every shard of the plan finished (or by
    ``plan.merge``, which encodes nothing).
    """
    started = time.perf_counter()
    result = ShardResult(skipped=plan.manifest.skipped)
    ctx = _Context(config, plan.manifest, Path(out), groundtruth, code_version(), result, advance or (lambda n: None))
    (ctx.out / SHARDS_SUBDIR).mkdir(parents=True, exist_ok=True)
    if plan.mine:
        _build(ctx, plan.mine)
    whole = plan.merge or plan.part is None
    if whole or _all_present(ctx.out, plan.jobs):
        _publish(ctx, plan.jobs, must=whole)
    if not result.published:
        result.missing = result.missing or sum(1 for job in plan.jobs if not (ctx.out / job.name).exists())
        result.shards = len(plan.mine)
        result.clips = plan.clips
    result.seconds = time.perf_counter() - started
    return result
