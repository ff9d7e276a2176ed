"""What the talker stages share: the FOMM checkpoint they build on, and the clips joined with their keypoints."""

from __future__ import annotations

from pathlib import Path

from fomm_core.data import ShardStore
from fomm_core.errors import FommError
from fomm_core.talker import TalkerClips, TalkerFommConfig
from pipeline.params import load_section

CHECKPOINT_HELP = ("FOMM checkpoint (this pipeline's or one from `fomm import-checkpoint`); default: "
                   "talker_fomm.checkpoint in --params.")


def fomm_checkpoint(option: Path | None, params: Path) -> Path:
    """``--checkpoint`` when given, else ``talker_fomm.checkpoint`` of params.yaml (what DVC runs)."""
    path = option if option is not None else Path(load_section(params, "talker_fomm", TalkerFommConfig).checkpoint)
    if not path.is_file():
        raise FommError(f"{path}: FOMM checkpoint not found; run `fomm train` (or `fomm import-checkpoint`) or set "
                        "talker_fomm.checkpoint / --checkpoint")
    return path


def load_clips(shards: Path, keypoints: Path, partition: str, audio_per_frame: int, log) -> TalkerClips:
    if not (shards / "index.parquet").is_file():
        raise FommError(f"{shards}/index.parquet not found; run `fomm shard` first or pass --shards")
    if not keypoints.is_dir():
        raise FommError(f"{keypoints}: not found; run `fomm extract-keypoints` first or pass --keypoints")
    clips = TalkerClips.from_store(ShardStore(shards), keypoints, partition, audio_per_frame=audio_per_frame)
    for clip_id, reason in getattr(clips, "skipped", []):
        log(f"skipped {clip_id}: {reason}")
    return clips
