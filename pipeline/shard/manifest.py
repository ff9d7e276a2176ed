"""Reading the crop stage's manifest: the ok clips, validated, in a fixed order, as columns.

VoxCeleb2 has 1.1M clips: the manifest stays an Arrow table (~250 bytes per clip) and a
:class:`ClipRow` is built only for a clip about to be sharded. Files are looked at (``stat``)
only for the clips a run actually handles, so a ``--part`` on a shared filesystem does not
``stat`` every other part's clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fomm_core.errors import FommError
from pipeline.ids import is_person_id, is_video_id, parse_clip_id

MANIFEST = "manifest.parquet"
REQUIRED = ("clip_id", "video_id", "person_id", "partition", "start", "end", "status", "fps",
            "num_frames", "video", "audio", "crop_left", "crop_top", "crop_right", "crop_bottom",
            "src_width", "src_height")
_VALIDATE_BATCH = 65536


@dataclass(frozen=True)
class ClipRow:
    """One ok clip of the manifest, with its files resolved under the clips folder."""

    clip_id: str
    video_id: str
    person_id: str
    partition: str
    start: int
    end: int
    fps: float
    num_frames: int  # what crop wrote; the shard counts the frames it decodes
    video: Path
    audio: Path | None
    crop_left: float
    crop_top: float
    crop_right: float
    crop_bottom: float
    src_width: float
    src_height: float
    manifest_row: int  # 1-based row in manifest.parquet, for messages

    def where(self, clips_dir: Path) -> str:
        return f"{clips_dir / MANIFEST} row {self.manifest_row} (clip {self.clip_id})"


def _number(value, where: str) -> float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise FommError(f"{where}: expected a number, got {value!r}; rerun fomm crop")
    return float(value)


def _box(value, where: str) -> float:
    """Crop-box numbers are only needed with ground truth; a missing one is NaN until then."""
    return float("nan") if value is None else _number(value, where) if not isinstance(value, float) else value


def _plain_relative(value, where: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise FommError(f"{where}: empty {what} path for an ok clip; rerun fomm crop")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\x00" in value or "\\" in value:
        raise FommError(f"{where}: {what} path {value!r} leaves the clips folder; rerun fomm crop")
    return value


class Manifest:
    """The ok clips of ``clips_dir/manifest.parquet`` sorted by (partition, clip_id)."""

    def __init__(self, clips_dir: Path):
        self.clips_dir = Path(clips_dir)
        path = self.clips_dir / MANIFEST
        if not self.clips_dir.is_dir():
            raise FommError(f"{self.clips_dir}: clips directory not found; run fomm crop first")
        if not path.is_file():
            raise FommError(f"{path}: manifest not found; run fomm crop first")
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise FommError(f"{path}: not a readable Parquet file ({exc}); rerun fomm crop") from None
        missing = [c for c in REQUIRED if c not in table.column_names]
        if missing:
            raise FommError(f"{path}: missing column(s) {', '.join(missing)}; rerun fomm crop")
        table = table.select(list(REQUIRED)).append_column(
            "manifest_row", pa.array(np.arange(1, len(table) + 1, dtype=np.int64)))
        ok = pc.fill_null(pc.equal(table["status"].cast(pa.string()), "ok"), False)
        self.skipped = len(table) - pc.sum(ok).as_py() if len(table) else 0
        table = table.filter(ok)
        self._validate(table, path)
        order = pc.sort_indices(table, [("partition", "ascending"), ("clip_id", "ascending")])
        self.table = table.take(order).combine_chunks()
        self._columns = {name: self.table.column(name) for name in self.table.column_names}

    @staticmethod
    def _validate(table: pa.Table, path: Path) -> None:
        """Every row's ids, partition, numbers and relative paths; batch by batch (memory flat)."""
        seen = pc.value_counts(table["clip_id"].cast(pa.string())) if len(table) else None
        if seen is not None:
            twice = seen.filter(pc.greater(seen.field("counts"), 1))
            if len(twice):
                raise FommError(f"{path}: clip_id {twice[0]['values'].as_py()!r} appears twice; rerun fomm crop")
        for offset in range(0, len(table), _VALIDATE_BATCH):
            for row in table.slice(offset, _VALIDATE_BATCH).to_pylist():
                where = f"{path} row {row['manifest_row']}"
                clip_id = row["clip_id"]
                if not isinstance(clip_id, str):
                    raise FommError(f"{where}: clip_id {clip_id!r} is not a string; rerun fomm crop")
                try:
                    person, video, _, _ = parse_clip_id(clip_id)
                except FommError as exc:
                    raise FommError(f"{where}: {exc}; rerun fomm crop") from None
                if person != row["person_id"] or video != row["video_id"]:
                    raise FommError(f"{where}: clip_id {clip_id!r} does not match person_id/video_id columns")
                if not is_person_id(person) or not is_video_id(video) or video.startswith("-"):
                    raise FommError(f"{where}: bad person or video id in {clip_id!r}")
                partition = row["partition"]
                if (not isinstance(partition, str) or not partition or "/" in partition or "\\" in partition
                        or partition.startswith((".", "-"))):
                    raise FommError(f"{where}: partition {partition!r} is not a plain name")
                for name in ("start", "end", "fps", "num_frames"):
                    _number(row[name], f"{where} {name}")
                _plain_relative(row["video"], where, "video")
                if isinstance(row["audio"], str) and row["audio"]:
                    _plain_relative(row["audio"], where, "audio")

    def __len__(self) -> int:
        return len(self.table)

    def frame_counts(self) -> np.ndarray:
        """Frames per clip as crop reported them (what the shard plan is made from)."""
        return self._columns["num_frames"].to_numpy().astype(np.int64)

    def clip_ids(self, first: int, count: int) -> list[str]:
        return self._columns["clip_id"].slice(first, count).to_pylist()

    def rows(self, first: int, count: int) -> list[ClipRow]:
        """Clips ``first .. first+count-1`` with their files checked to exist."""
        out = []
        for row in self.table.slice(first, count).to_pylist():
            where = f"{self.clips_dir / MANIFEST} row {row['manifest_row']}"
            # Joined as text: the relative paths were checked not to leave the folder, and
            # resolving each (a stat per component) would cost minutes at 1.1M clips.
            video = self.clips_dir / row["video"]
            if not video.is_file():
                raise FommError(f"{where}: {video} not found; rerun fomm crop")
            audio = None
            if isinstance(row["audio"], str) and row["audio"]:
                audio = self.clips_dir / row["audio"]
                if not audio.is_file():
                    raise FommError(f"{where}: {audio} not found; rerun fomm crop")
            person, video_id, _, _ = parse_clip_id(row["clip_id"])
            out.append(ClipRow(
                clip_id=row["clip_id"], video_id=video_id, person_id=person, partition=row["partition"],
                start=int(row["start"]), end=int(row["end"]), fps=float(row["fps"]),
                num_frames=int(row["num_frames"]), video=video, audio=audio,
                crop_left=_box(row["crop_left"], f"{where} crop_left"),
                crop_top=_box(row["crop_top"], f"{where} crop_top"),
                crop_right=_box(row["crop_right"], f"{where} crop_right"),
                crop_bottom=_box(row["crop_bottom"], f"{where} crop_bottom"),
                src_width=_box(row["src_width"], f"{where} src_width"),
                src_height=_box(row["src_height"], f"{where} src_height"),
                manifest_row=int(row["manifest_row"]),
            ))
        return out

