"""Reading the crop stage's manifest: the ok clips, validated, in a fixed order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fomm_core.errors import FommError
from pipeline.ids import is_person_id, is_video_id, parse_clip_id, safe_join

MANIFEST = "manifest.parquet"
REQUIRED = ("clip_id", "video_id", "person_id", "partition", "start", "end", "status", "fps",
            "video", "audio", "crop_left", "crop_top", "crop_right", "crop_bottom",
            "src_width", "src_height")


@dataclass(frozen=True)
class ClipRow:
    clip_id: str
    video_id: str
    person_id: str
    partition: str
    start: int
    end: int
    fps: float
    video: Path
    audio: Path | None
    crop_left: float
    crop_top: float
    crop_right: float
    crop_bottom: float
    src_width: float
    src_height: float


def _number(value, where: str) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise FommError(f"{where}: expected a number, got {value!r}; rerun fomm crop")
    return float(value)


def _box(value, where: str) -> float:
    """Crop-box numbers are only needed with ground truth; a missing one is NaN until then."""
    return float("nan") if value is None else _number(value, where) if not isinstance(value, float) else value


def read_manifest(clips_dir: Path) -> tuple[list[ClipRow], int]:
    """``(ok clips sorted by partition then clip_id, number of rows skipped as not ok)``."""
    path = clips_dir / MANIFEST
    if not clips_dir.is_dir():
        raise FommError(f"{clips_dir}: clips directory not found; run fomm crop first")
    if not path.is_file():
        raise FommError(f"{path}: manifest not found; run fomm crop first")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FommError(f"{path}: not a readable Parquet file ({exc}); rerun fomm crop") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise FommError(f"{path}: missing column(s) {', '.join(missing)}; rerun fomm crop")
    rows = table.select(list(REQUIRED)).to_pylist()
    clips: list[ClipRow] = []
    skipped = 0
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        where = f"{path} row {number}"
        if row["status"] != "ok":
            skipped += 1
            continue
        clip_id = row["clip_id"]
        if not isinstance(clip_id, str):
            raise FommError(f"{where}: clip_id {clip_id!r} is not a string; rerun fomm crop")
        person, video, _, _ = parse_clip_id(clip_id)
        if person != row["person_id"] or video != row["video_id"]:
            raise FommError(f"{where}: clip_id {clip_id!r} does not match person_id/video_id columns")
        if not is_person_id(person) or not is_video_id(video):
            raise FommError(f"{where}: bad person or video id in {clip_id!r}")
        if clip_id in seen:
            raise FommError(f"{where}: clip_id {clip_id!r} appears twice; rerun fomm crop")
        seen.add(clip_id)
        partition = row["partition"]
        if not isinstance(partition, str) or not partition or "/" in partition or partition.startswith("."):
            raise FommError(f"{where}: partition {partition!r} is not a plain name")
        if not isinstance(row["video"], str) or not row["video"]:
            raise FommError(f"{where}: empty video path for an ok clip; rerun fomm crop")
        video_path = safe_join(clips_dir, *Path(row["video"]).parts)
        if not video_path.is_file():
            raise FommError(f"{where}: {video_path} not found; rerun fomm crop")
        audio_path = None
        if isinstance(row["audio"], str) and row["audio"]:
            audio_path = safe_join(clips_dir, *Path(row["audio"]).parts)
            if not audio_path.is_file():
                raise FommError(f"{where}: {audio_path} not found; rerun fomm crop")
        clips.append(ClipRow(
            clip_id=clip_id, video_id=video, person_id=person, partition=partition,
            start=int(_number(row["start"], f"{where} start")),
            end=int(_number(row["end"], f"{where} end")),
            fps=_number(row["fps"], f"{where} fps"),
            video=video_path, audio=audio_path,
            crop_left=_box(row["crop_left"], f"{where} crop_left"),
            crop_top=_box(row["crop_top"], f"{where} crop_top"),
            crop_right=_box(row["crop_right"], f"{where} crop_right"),
            crop_bottom=_box(row["crop_bottom"], f"{where} crop_bottom"),
            src_width=_box(row["src_width"], f"{where} src_width"),
            src_height=_box(row["src_height"], f"{where} src_height"),
        ))
    clips.sort(key=lambda c: (c.partition, c.clip_id))
    return clips, skipped
