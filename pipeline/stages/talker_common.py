"""What the talker stages share: loading the clips joined with their keypoints."""

from __future__ import annotations

from pathlib import Path

from fomm_core.data import ShardStore
from fomm_core.errors import FommError
from fomm_core.talker import TalkerClips


def load_clips(shards: Path, keypoints: Path, partition: str, audio_per_frame: int, log) -> TalkerClips:
    if not (shards / "index.parquet").is_file():
        raise FommError(f"{shards}/index.parquet not found; run `fomm shard` first or pass --shards")
    if not keypoints.is_dir():
        raise FommError(f"{keypoints}: not found; run `fomm extract-keypoints` first or pass --keypoints")
    clips = TalkerClips.from_store(ShardStore(shards), keypoints, partition, audio_per_frame=audio_per_frame)
    for clip_id, reason in getattr(clips, "skipped", []):
        log(f"skipped {clip_id}: {reason}")
    return clips
