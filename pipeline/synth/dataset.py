"""Rendering the whole set (in parallel) and writing the VoxCeleb-format metadata CSV."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from fomm_core.atomic import write_text_atomic
from pipeline.cores import worker_count
from pipeline.lifecycle import die_with_parent

from .config import FPS, SynthConfig
from .plan import VideoPlan, plan_videos
from .render import VideoResult, render_video

CSV_COLUMNS = ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition", "person_id", "url")
CSV_NAME = "vox-metadata.csv"


@dataclass(frozen=True)
class SynthSummary:
    videos: int
    clips: int
    train_clips: int
    test_clips: int
    identities: int
    frames: int


def metadata_csv(results: Iterable[VideoResult], width: int, height: int) -> str:
    """One row per clip; ``url`` is the video's path relative to the CSV (see pipeline/local_urls.py)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        plan = result.plan
        url = f"videos/{plan.video_id}.mp4"
        for clip, (left, top, right, bottom) in zip(plan.clips, result.clip_boxes):
            writer.writerow([plan.video_id, clip.start, clip.end, f"{left}-{top}-{right}-{bottom}", FPS,
                             width, height, plan.partition, plan.person_id, url])
    return buffer.getvalue()


def _render_one(plan: VideoPlan, cfg: SynthConfig, out_dir: str, threads: int) -> VideoResult:
    return render_video(plan, cfg, Path(out_dir), threads)


def synthesize(
    cfg: SynthConfig, work_dir: Path, advance: Callable[[], None] = lambda: None
) -> SynthSummary:
    """Render every video into ``work_dir`` (later renamed to the output folder) and write the CSV."""
    plans = plan_videos(cfg)
    (work_dir / "videos").mkdir(parents=True, exist_ok=True)
    (work_dir / "groundtruth").mkdir(parents=True, exist_ok=True)
    workers = worker_count(cfg.workers)
    workers = max(1, min(workers, len(plans)))
    results: dict[int, VideoResult] = {}
    if workers == 1:
        for plan in plans:
            results[plan.index] = render_video(plan, cfg, work_dir)
            advance()
    else:
        # one x264 thread per video: the pool already keeps every core busy
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
            futures = [pool.submit(_render_one, plan, cfg, str(work_dir), 1) for plan in plans]
            try:
                for future in as_completed(futures):
                    result = future.result()
                    results[result.plan.index] = result
                    advance()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    ordered = [results[plan.index] for plan in plans]
    write_text_atomic(work_dir / CSV_NAME, metadata_csv(ordered, cfg.width, cfg.height))
    clips = [(p.partition, c) for p in plans for c in p.clips]
    return SynthSummary(
        videos=len(plans),
        clips=len(clips),
        train_clips=sum(1 for part, _ in clips if part == "train"),
        test_clips=sum(1 for part, _ in clips if part == "test"),
        identities=cfg.identities,
        frames=sum(r.frames for r in ordered),
    )
