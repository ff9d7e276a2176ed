"""The shard stage's work: clips in manifest order to shards, index and feature NPZs.

Clips are processed one at a time and frames streamed, so memory does not depend on the
number or length of clips. Everything written is a function of the input alone (sorted
clips, no timestamps), so a rerun produces byte-identical files.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fomm_core import audio
from fomm_core.errors import FommError
from pipeline.ids import safe_join

from .encode import ImageCodec
from .features import CropGeometry, GroundTruthSource, audio_features, map_groundtruth, write_npz
from .frames import iter_frames, probe
from .manifest import ClipRow, read_manifest
from .writer import ShardWriter, SpilledClip

INDEX = "index.parquet"
FEATURES_SUBDIR = "features"
INDEX_SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("person_id", pa.string()), ("video_id", pa.string()),
    ("partition", pa.string()), ("shard", pa.string()), ("row_start", pa.int64()),
    ("row_end", pa.int64()), ("num_frames", pa.int32()), ("fps", pa.float64()),
    ("image_format", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
    ("features", pa.string()), ("has_groundtruth", pa.bool_()),
])


@dataclass(frozen=True)
class BuildOptions:
    max_shard_bytes: int
    row_group_frames: int
    codec: ImageCodec
    encode_threads: int = 1


@dataclass
class BuildResult:
    clips: int = 0
    frames: int = 0
    shards: int = 0
    bytes: int = 0
    skipped: int = 0
    with_groundtruth: int = 0
    seconds: float = 0.0
    index_rows: list[dict] = field(default_factory=list, repr=False)


def _encoded(frames: Iterator[np.ndarray], encode: Callable[[np.ndarray], bytes],
             pool: ThreadPoolExecutor | None, batch: int) -> Iterator[bytes]:
    """Encoded frames in order; with a pool, a bounded batch is encoded in parallel."""
    if pool is None:
        for frame in frames:
            yield encode(frame)
        return
    pending: list[np.ndarray] = []
    for frame in frames:
        pending.append(frame)
        if len(pending) == batch:
            yield from pool.map(encode, pending)
            pending = []
    if pending:
        yield from pool.map(encode, pending)


def list_clips(clips_dir: Path) -> tuple[list[ClipRow], int]:
    return read_manifest(clips_dir)


def build(clips: list[ClipRow], skipped: int, out_dir: Path, options: BuildOptions,
          groundtruth_dir: Path | None = None,
          advance: Callable[[], None] | None = None) -> BuildResult:
    """Write ``out_dir/{shards,features,index.parquet}`` for ``clips`` (already sorted)."""
    started = time.perf_counter()
    result = BuildResult(skipped=skipped)
    gt_source = GroundTruthSource(groundtruth_dir) if groundtruth_dir is not None else None
    encode = options.codec.encoder()
    threads = max(1, options.encode_threads)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        with ShardWriter(out_dir, options.max_shard_bytes, options.row_group_frames) as writer:
            for clip in clips:
                info = probe(clip.video)
                with SpilledClip(out_dir) as spill:
                    for image in _encoded(iter_frames(clip.video, info), encode, pool, 4 * threads):
                        spill.add(image)
                    if spill.num_frames == 0:
                        raise FommError(f"{clip.video}: no frames decoded; rerun fomm crop")
                    placement = writer.add_clip(clip.clip_id, spill)
                    num_frames = spill.num_frames
                fps = clip.fps if clip.fps > 0 else 25.0
                arrays = audio_features(clip.audio, int(round(num_frames * audio.SAMPLE_RATE / fps)))
                has_gt = False
                if gt_source is not None:
                    gt = gt_source.load(clip.video_id)
                    if gt is not None:
                        geo = CropGeometry(clip.start, clip.fps, clip.crop_left, clip.crop_top,
                                           clip.crop_right, clip.crop_bottom, clip.src_width,
                                           clip.src_height, info.width, info.height)
                        arrays.update(map_groundtruth(gt, geo, num_frames, f"clip {clip.clip_id}"))
                        has_gt = True
                features_rel = f"{FEATURES_SUBDIR}/{clip.partition}/{clip.clip_id}.npz"
                write_npz(safe_join(out_dir, FEATURES_SUBDIR, clip.partition, f"{clip.clip_id}.npz"), arrays)
                result.index_rows.append({
                    "clip_id": clip.clip_id, "person_id": clip.person_id, "video_id": clip.video_id,
                    "partition": clip.partition, "shard": placement.shard,
                    "row_start": placement.row_start, "row_end": placement.row_end,
                    "num_frames": num_frames, "fps": clip.fps,
                    "image_format": options.codec.image_format,
                    "height": info.height, "width": info.width,
                    "features": features_rel, "has_groundtruth": has_gt,
                })
                result.clips += 1
                result.frames += num_frames
                result.with_groundtruth += int(has_gt)
                if advance is not None:
                    advance()
        result.shards = len(writer.shards)
        result.bytes = writer.total_bytes
    finally:
        if pool is not None:
            pool.shutdown()
    table = pa.Table.from_pylist(result.index_rows, schema=INDEX_SCHEMA)
    pq.write_table(table, out_dir / INDEX, compression="zstd")
    result.seconds = time.perf_counter() - started
    return result
