"""What the talker stages share: loading the clips joined with their keypoints, and the
training display with its loss curve."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

from fomm_core.curves import LossCurve
from fomm_core.data import ShardStore
from fomm_core.errors import FommError
from fomm_core.progress import OnStep, StepReport, short_name
from fomm_core.talker import TalkerClips
from pipeline.progress import step_progress


def require_clip_inputs(shards: Path, keypoints: Path) -> None:
    """The shards and keypoints exist (checked before anything is written or loaded)."""
    if not (shards / "index.parquet").is_file():
        raise FommError(f"{shards}/index.parquet not found; run `fomm shard` first or pass --shards")
    if not keypoints.is_dir():
        raise FommError(f"{keypoints}: not found; run `fomm extract-keypoints` first or pass --keypoints")


def load_clips(shards: Path, keypoints: Path, partition: str, audio_per_frame: int, log) -> TalkerClips:
    require_clip_inputs(shards, keypoints)
    clips = TalkerClips.from_store(ShardStore(shards), keypoints, partition, audio_per_frame=audio_per_frame)
    for clip_id, reason in getattr(clips, "skipped", []):
        log(f"skipped {clip_id}: {reason}")
    return clips


@contextlib.contextmanager
def progress_and_curve(description: str, total: int, curve_path: Path, metrics: Sequence[str]) -> Iterator[OnStep]:
    """The ``on_step`` callback of a talker loop: the progress display, and a row of the loss
    curve at ``curve_path`` (columns: ``metrics`` without their prefix) at each log point."""
    curve = LossCurve(curve_path, [short_name(name) for name in metrics])
    curve.start()
    try:
        with step_progress(description, total) as show:
            def on_step(report: StepReport) -> None:
                show(report)
                if report.logged is not None:
                    curve.append(report.step, {short_name(k): v for k, v in report.logged.items()})

            yield on_step
    finally:
        curve.close()
