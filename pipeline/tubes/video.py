"""One video's tubes (runs in a worker process): decode, detect, link, cut, write its part.

A job is one (person, video) pair with its input clips: the utterances of a VoxCeleb txt
video (each with its reference track) or the whole span of an own video. The result goes
to ``parts/{video_id}/{person_id}.clips.parquet`` / ``.rejects.parquet`` atomically, the
clips file last, so a part whose clips file exists is complete; its fingerprint (settings
and inputs) says whether a resumed run may reuse it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError
from fomm_core.faces import load_backend
from fomm_core.faces.tubes import NO_FACE, TubeSettings, find_tubes
from fomm_core.inference.video_io import probe_video
from pipeline.ids import make_clip_id, safe_join
from pipeline.metadata.tables import CLIPS_SCHEMA, REJECTS_SCHEMA
from pipeline.video_files import METADATA_FPS, find_source

from .frames import detection_size, sampled_frames

NOT_DOWNLOADED = "not_downloaded"
CORRUPT = "corrupt"
SAME_SPAN = "same_span"  # a second face with exactly the same frames as a kept tube of this person
OUTSIDE_REGION = "outside_region"  # detect mode on a CSV clip: the face is not in the clip's box
FINGERPRINT_KEY = b"fomm.tubes.fingerprint"


@dataclass(frozen=True)
class InputClip:
    """A row of the metadata clips table (box in its ``width x height`` units)."""

    clip_id: str
    partition: str
    start: int
    end: int
    box: tuple[float, float, float, float]
    width: float
    height: float
    url: str
    source: str
    reference: tuple[tuple[int, ...], tuple[tuple[float, float, float, float], ...]] | None = None  # frames, xywh


@dataclass(frozen=True)
class VideoJob:
    person_id: str
    video_id: str
    clips: tuple[InputClip, ...]
    use_reference: bool

    def fingerprint(self, settings: TubeSettings) -> str:
        recipe = {k: v for k, v in dataclasses.asdict(settings).items() if k != "workers"}
        payload = json.dumps([recipe, dataclasses.asdict(self)], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()

    def part(self, parts: Path, kind: str) -> Path:
        return part_path(parts, self.person_id, self.video_id, kind)


def part_path(parts: Path, person_id: str, video_id: str, kind: str) -> Path:
    """``parts/{video_id}/{person_id}.{clips|rejects}.parquet``."""
    return safe_join(parts, video_id, f"{person_id}.{kind}.parquet")


@dataclass
class JobResult:
    clips: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    sampled: int = 0  # frames the detector ran on
    seconds_of_video: float = 0.0


_BACKEND = None


def _backend(detector: str):
    global _BACKEND
    if _BACKEND is None or _BACKEND.name != f"dlib-{detector}":
        _BACKEND = load_backend(detector)
    return _BACKEND


def _scale(clip: InputClip, real_w: int, real_h: int) -> tuple[float, float]:
    """Metadata units to source pixels (width 0: x scales like y, VoxCeleb1 txt)."""
    sy = real_h / clip.height
    return (real_w / clip.width if clip.width > 0 else sy), sy


def _reject(job: VideoJob, clip: InputClip, start: int, end: int, reason: str, detail: str) -> dict:
    return {"source": clip.source, "row": 0, "video_id": job.video_id, "person_id": job.person_id,
            "start": start, "end": end, "reason": reason, "detail": detail}


def tubes_of_clip(job: VideoJob, clip: InputClip, videos: Path, settings, result: JobResult) -> None:
    source = find_source(videos, job.video_id, clip.start, clip.end)
    if source is None:
        result.rejects.append(_reject(job, clip, clip.start, clip.end, NOT_DOWNLOADED, "no downloaded video"))
        return
    try:
        info = probe_video(source.path)
    except FommError as exc:
        result.rejects.append(_reject(job, clip, clip.start, clip.end, CORRUPT, str(exc)[:300]))
        return
    sx, sy = _scale(clip, info.width, info.height)
    reference = None
    if job.use_reference and clip.reference is not None:
        frames, boxes = clip.reference
        reference = {f: np.array([x * sx, y * sy, (x + w) * sx, (y + h) * sy]) for f, (x, y, w, h) in zip(frames, boxes)}
    det_w, det_h = detection_size(info.width, info.height, settings.detect_height)
    back = info.height / det_h
    seek = clip.start / METADATA_FPS - source.offset_seconds
    backend = _backend(settings.detector)
    frames_at, detections, scores = [], [], []
    try:
        for offset, frame in sampled_frames(source.path, seek, clip.end - clip.start, settings.stride, info.width,
                                            info.height, settings.detect_height):
            found = backend.detect_one(frame)
            frames_at.append(clip.start + offset)
            detections.append(found.boxes * back)
            scores.append(found.scores)
    except FommError as exc:
        result.rejects.append(_reject(job, clip, clip.start, clip.end, CORRUPT, str(exc)[:300]))
        return
    result.sampled += len(frames_at)
    result.seconds_of_video += (clip.end - clip.start) / METADATA_FPS
    tubes = find_tubes(frames_at, detections, scores, clip.end, settings, reference)
    region = np.array([clip.box[0] * sx, clip.box[1] * sy, clip.box[2] * sx, clip.box[3] * sy])
    for tube in tubes:
        cx, cy = (tube.face_box[0] + tube.face_box[2]) / 2, (tube.face_box[1] + tube.face_box[3]) / 2
        side = min(tube.face_box[2] - tube.face_box[0], tube.face_box[3] - tube.face_box[1])
        if reference is None and not (region[0] <= cx <= region[2] and region[1] <= cy <= region[3]):
            result.rejects.append(_reject(job, clip, tube.start, tube.end, OUTSIDE_REGION,
                                          f"face centre {cx:.0f},{cy:.0f} is outside the clip box"))
            continue
        if tube.reason is not None:
            detail = (f"{tube.num_frames} frames, fewer than min_frames {settings.min_frames}" if tube.reason == "too_short"
                      else f"face {side:.0f} px, smaller than min_size {settings.min_size:g}")
            result.rejects.append(_reject(job, clip, tube.start, tube.end, tube.reason, detail))
            continue
        left, top, right, bottom = tube.box
        fitted = (max(left, 0.0), max(top, 0.0), min(right, float(info.width)), min(bottom, float(info.height)))
        result.clips.append({
            "clip_id": make_clip_id(job.person_id, job.video_id, tube.start, tube.end),
            "video_id": job.video_id, "person_id": job.person_id, "partition": clip.partition,
            "start": tube.start, "end": tube.end, "fps": float(METADATA_FPS),
            "left": fitted[0], "top": fitted[1], "right": fitted[2], "bottom": fitted[3],
            "width": info.width, "height": info.height, "url": clip.url, "source": clip.source,
            "box_clipped": fitted != (left, top, right, bottom),
        })
    if not tubes:
        result.rejects.append(_reject(job, clip, clip.start, clip.end, NO_FACE,
                                      f"no face track in {len(frames_at)} sampled frames"))


def _unique(job: VideoJob, result: JobResult) -> None:
    """Two faces with exactly the same span would share a clip id: keep the first (larger) one."""
    seen: set[str] = set()
    unique = []
    for row in result.clips:
        if row["clip_id"] in seen:
            result.rejects.append({"source": row["source"], "row": 0, "video_id": job.video_id,
                                   "person_id": job.person_id, "start": row["start"], "end": row["end"],
                                   "reason": SAME_SPAN, "detail": f"another face of this person has the frames of {row['clip_id']}"})
            continue
        seen.add(row["clip_id"])
        unique.append(row)
    result.clips = unique


def run_job(job: VideoJob, videos: Path, parts: Path, settings) -> tuple[int, int, int, float]:
    """Compute and write one job's part; returns (kept, rejected, sampled frames, video seconds)."""
    result = JobResult()
    for clip in job.clips:
        tubes_of_clip(job, clip, videos, settings, result)
    _unique(job, result)
    result.clips.sort(key=lambda r: r["clip_id"])
    result.rejects.sort(key=lambda r: (r["source"], r["start"] or 0, r["reason"]))
    fingerprint = job.fingerprint(settings).encode()
    for kind, rows, schema in (("rejects", result.rejects, REJECTS_SCHEMA), ("clips", result.clips, CLIPS_SCHEMA)):
        table = pa.Table.from_pylist(rows, schema=schema).replace_schema_metadata({FINGERPRINT_KEY: fingerprint})
        with atomic_path(job.part(parts, kind)) as tmp:
            pq.write_table(table, tmp)
    return len(result.clips), len(result.rejects), result.sampled, result.seconds_of_video


def part_is_current(job: VideoJob, parts: Path, settings) -> bool:
    """The job's part exists (clips file written last) and was made from the same inputs."""
    path = job.part(parts, "clips")
    if not path.is_file() or not job.part(parts, "rejects").is_file():
        return False
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # a damaged part is recomputed
        return False
    return metadata.get(FINGERPRINT_KEY) == job.fingerprint(settings).encode()
