"""One clip's work, run in a worker process: its frames to a spill file, its features NPZ.

A spill is a one-clip shard file (``fomm_core.shard_file``) renamed into place only when
complete, after the features NPZ: so an existing spill means the clip is finished, and a
killed run redoes only the clips that were being encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fomm_core import audio
from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError
from fomm_core.shard_file import ShardFileWriter

from .config import ShardConfig
from .encode import encoder
from .features import CropGeometry, GroundTruthSource, audio_features, map_groundtruth, write_npz
from .frames import iter_frames, probe
from .manifest import ClipRow

DEFAULT_FPS = 25.0
_groundtruth: dict[Path, GroundTruthSource] = {}  # per worker process: a few videos cached


@dataclass(frozen=True)
class ClipTask:
    clip: ClipRow
    key: str
    where: str  # "manifest row N (clip ...)" for messages
    spill: Path
    features: Path
    features_rel: str
    groundtruth: Path | None
    config: ShardConfig


def _groundtruth_source(directory: Path) -> GroundTruthSource:
    source = _groundtruth.get(directory)
    if source is None:
        source = _groundtruth[directory] = GroundTruthSource(directory)
    return source


def encode_clip(task: ClipTask) -> int:
    """Write the clip's features NPZ, then its spill; the number of frames."""
    clip = task.clip
    info = probe(clip.video)
    encode = encoder(task.config)
    with atomic_path(task.spill) as tmp:
        with open(tmp, "wb") as sink:
            writer = ShardFileWriter(sink)
            for frame in iter_frames(clip.video, info):
                writer.add(encode(frame))
            num_frames = writer.num_frames
            if num_frames == 0:
                raise FommError(f"{task.where}: {clip.video}: no frames decoded; rerun fomm crop")
            fps = clip.fps if clip.fps > 0 else DEFAULT_FPS
            samples_per_frame = audio.SAMPLE_RATE / fps
            arrays = audio_features(clip.audio, int(round(num_frames * samples_per_frame)),
                                    slack=int(round(samples_per_frame)), where=task.where)
            has_gt = False
            if task.groundtruth is not None:
                gt = _groundtruth_source(task.groundtruth).load(clip.video_id)
                if gt is not None:
                    geo = CropGeometry(clip.start, clip.fps, clip.crop_left, clip.crop_top, clip.crop_right,
                                       clip.crop_bottom, clip.src_width, clip.src_height, info.width, info.height)
                    arrays.update(map_groundtruth(gt, geo, num_frames, task.where))
                    has_gt = True
            write_npz(task.features, arrays)
            row = {
                "clip_id": clip.clip_id, "person_id": clip.person_id, "video_id": clip.video_id,
                "partition": clip.partition, "num_frames": num_frames, "fps": clip.fps,
                "image_format": task.config.image_format, "height": info.height, "width": info.width,
                "features": task.features_rel, "has_groundtruth": has_gt,
            }
            writer.finish(task.key, [row])
    return num_frames
