"""What the talker stages share: loading clips and keeping an MLflow run's bookkeeping."""

from __future__ import annotations

import json
import math
from pathlib import Path

from fomm_core.atomic import write_text_atomic
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


def numeric(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics dict (what MLflow can store)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def write_json(path: Path, payload: dict) -> None:
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in payload.items()}
    write_text_atomic(path, json.dumps(clean, indent=2, allow_nan=False) + "\n")
