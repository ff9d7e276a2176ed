"""The crop stage's tables: reading and checking the clips table, writing the manifest.

The clips table is untrusted input (it may have been edited or come from elsewhere):
every id that becomes a path is checked here, and a bad row stops the stage with a
message naming the row, before any work is done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError
from pipeline.ids import PARTITIONS, VIDEO_ID_RULE, is_person_id, is_video_id, parse_clip_id

from .geometry import Box

CLIP_COLUMNS = ("clip_id", "video_id", "person_id", "partition", "start", "end",
                "left", "top", "right", "bottom", "width", "height")

MANIFEST_COLUMNS = ("clip_id", "video_id", "person_id", "partition", "start", "end", "status",
                    "reason", "num_frames", "fps", "video", "audio", "crop_left", "crop_top",
                    "crop_right", "crop_bottom", "src_width", "src_height")


@dataclass(frozen=True)
class Clip:
    """One row of the clips table, checked."""

    row: int
    clip_id: str
    video_id: str
    person_id: str
    partition: str
    start: int
    end: int
    box: Box
    width: float
    height: float

    @property
    def num_frames(self) -> int:
        return self.end - self.start


def _number(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FommError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise FommError(f"{where}: expected a finite number, got {value!r}")
    return number


def _integer(value: object, where: str) -> int:
    number = _number(value, where)
    if number != int(number):
        raise FommError(f"{where}: expected a whole frame number, got {value!r}")
    return int(number)


def read_clips(path: Path) -> list[Clip]:
    """The clips of ``path`` (Parquet, columns of CONTRACTS.md "metadata")."""
    if not path.is_file():
        raise FommError(f"{path}: clips table not found; run `fomm metadata` first or pass CLIPS")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a non-Parquet file
        raise FommError(f"{path}: not a readable Parquet table ({type(exc).__name__})") from None
    missing = [c for c in CLIP_COLUMNS if c not in frame.columns]
    if missing:
        raise FommError(f"{path}: missing column(s) {', '.join(missing)}; expected the metadata stage's clips table")
    if frame.empty:
        raise FommError(f"{path}: the clips table has no rows; nothing to crop")
    clips = []
    seen: set[str] = set()
    for row, rec in enumerate(frame[list(CLIP_COLUMNS)].itertuples(index=False)):
        where = f"{path} row {row}"
        clip_id, video_id, person_id, partition = rec.clip_id, rec.video_id, rec.person_id, rec.partition
        if not is_video_id(video_id):
            raise FommError(f"{where}: video_id {video_id!r} is not {VIDEO_ID_RULE}")
        if not is_person_id(person_id):
            raise FommError(f"{where}: person_id {person_id!r} is not of the form id12345")
        if partition not in PARTITIONS:
            raise FommError(f"{where}: partition {partition!r} is not one of {', '.join(PARTITIONS)}")
        start, end = _integer(rec.start, f"{where} start"), _integer(rec.end, f"{where} end")
        if not isinstance(clip_id, str):
            raise FommError(f"{where}: clip_id {clip_id!r} is not a string")
        try:
            parsed = parse_clip_id(clip_id)
        except FommError as exc:
            raise FommError(f"{where}: {exc}") from None
        if parsed != (person_id, video_id, start, end):
            raise FommError(f"{where}: clip_id {clip_id!r} does not match its person/video/start/end columns")
        if clip_id in seen:
            raise FommError(f"{where}: duplicate clip_id {clip_id!r}")
        seen.add(clip_id)
        if start < 0 or end <= start:
            raise FommError(f"{where}: frames [{start}, {end}) are empty or negative")
        box = Box(*(_number(getattr(rec, k), f"{where} {k}") for k in ("left", "top", "right", "bottom")))
        if box.width <= 0 or box.height <= 0:
            raise FommError(f"{where}: box {box.left:g},{box.top:g},{box.right:g},{box.bottom:g} is empty")
        width, height = _number(rec.width, f"{where} width"), _number(rec.height, f"{where} height")
        if height <= 0 or width < 0:
            raise FommError(f"{where}: frame size {width:g}x{height:g} is invalid (height > 0, width >= 0)")
        clips.append(Clip(row, clip_id, video_id, person_id, partition, start, end, box, width, height))
    return clips


@dataclass
class ClipResult:
    """One manifest row: what happened to a clip."""

    clip: Clip
    status: str = "failed"
    reason: str = ""
    num_frames: int = 0
    fps: float = 0.0
    video: str = ""
    audio: str = ""
    crop: Box | None = None
    src_width: int = 0
    src_height: int = 0
    detail: str = field(default="", compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def manifest_frame(results: list[ClipResult]) -> pd.DataFrame:
    nan = float("nan")
    rows = []
    for r in results:
        c = r.clip
        rows.append({
            "clip_id": c.clip_id, "video_id": c.video_id, "person_id": c.person_id,
            "partition": c.partition, "start": c.start, "end": c.end, "status": r.status,
            "reason": r.reason, "num_frames": r.num_frames, "fps": r.fps, "video": r.video,
            "audio": r.audio,
            "crop_left": r.crop.left if r.crop else nan, "crop_top": r.crop.top if r.crop else nan,
            "crop_right": r.crop.right if r.crop else nan,
            "crop_bottom": r.crop.bottom if r.crop else nan,
            "src_width": r.src_width, "src_height": r.src_height,
        })
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    types = {"start": "int64", "end": "int64", "num_frames": "int64", "fps": "float64",
             "crop_left": "float64", "crop_top": "float64", "crop_right": "float64",
             "crop_bottom": "float64", "src_width": "int64", "src_height": "int64"}
    frame = frame.astype(types)
    for col in ("clip_id", "video_id", "person_id", "partition", "status", "reason", "video", "audio"):
        frame[col] = frame[col].astype(str)
    return frame


def write_manifest(results: list[ClipResult], path: Path) -> pd.DataFrame:
    frame = manifest_frame(results)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame
