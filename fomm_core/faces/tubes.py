"""Face tubes: per-frame detections to stable face clips, the VoxCeleb preprocessing recipe.

Detections run every ``stride`` frames. Boxes are linked over time into *tracks*: with a
reference track (the VoxCeleb txt box of the speaker) the detection overlapping the
reference most is the speaker's; without one, every face is tracked by greedy IoU
matching with the track's last box. A track ends when its face is missed for more than
``max_gap`` frames (the face left, or the detector lost it).

A track is then cut into *tubes*: a tube keeps growing while the current box overlaps the
tube's first box by at least ``iou_with_initial`` and the tube is shorter than
``max_frames``; otherwise a new tube starts at this box. So a moving head gives several
tight tubes instead of one loose box. Each tube's box is the union of its boxes, enlarged
by ``increase_area``; tubes shorter than ``min_frames`` or with a union box side below
``min_size`` pixels are rejected with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boxes import enlarge, iou, union_box

TOO_SHORT = "too_short"
TOO_SMALL = "too_small"
NO_FACE = "no_face"


@dataclass(frozen=True)
class TubeSettings:
    stride: int = 5  # detect on every stride-th frame
    iou_with_initial: float = 0.25  # a tube ends when a box overlaps its first box less than this
    max_frames: int = 1024  # longest tube, frames
    min_frames: int = 64  # shorter tubes are rejected (too_short)
    min_size: float = 80.0  # tubes whose union box side (pixels, before enlarging) is smaller are rejected
    increase_area: float = 0.2  # the union box grows by this fraction of its width and height
    track_iou: float = 0.3  # a detection continues a track when it overlaps the track's last box this much
    max_gap: int = 10  # a face unseen for more frames than this ends its track (>= stride: one miss is forgiven)
    min_reference_iou: float = 0.2  # with a reference track: smallest overlap that counts as the speaker

    def validate(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be at least 1, got {self.stride}")
        if self.max_gap < self.stride:
            raise ValueError(f"max_gap ({self.max_gap}) must be at least stride ({self.stride})")
        for name in ("iou_with_initial", "track_iou", "min_reference_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {self.min_frames} and {self.max_frames}")
        if self.min_size < 0 or not 0.0 <= self.increase_area <= 10.0:
            raise ValueError("min_size must be >= 0 and increase_area between 0 and 10")


@dataclass
class Track:
    frames: list[int] = field(default_factory=list)  # frame indices with a detection
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Tube:
    """Frames ``[start, end)`` and the (enlarged, not yet clipped) box; ``reason`` set when rejected."""

    track: int
    start: int
    end: int
    box: np.ndarray  # left, top, right, bottom, enlarged
    face_box: np.ndarray  # union of the detected boxes
    detections: int
    score: float
    reason: str | None = None

    @property
    def num_frames(self) -> int:
        return self.end - self.start


def link_to_reference(frames: list[int], detections: list[np.ndarray], scores: list[np.ndarray],
                      reference: dict[int, np.ndarray], min_iou: float) -> list[Track]:
    """One track: at each frame the detection overlapping the reference box most."""
    track = Track()
    for frame, boxes, frame_scores in zip(frames, detections, scores):
        ref = reference.get(frame)
        if ref is None or not len(boxes):
            continue
        overlaps = iou(boxes, ref[None, :])
        best = int(np.argmax(overlaps))
        if overlaps[best] >= min_iou:
            track.frames.append(frame)
            track.boxes.append(boxes[best])
            track.scores.append(float(frame_scores[best]))
    return [track] if track.frames else []


def link_tracks(frames: list[int], detections: list[np.ndarray], scores: list[np.ndarray],
                settings: TubeSettings) -> list[Track]:
    """Every face tracked by greedy IoU with the tracks' last boxes (best pairs first)."""
    finished: list[Track] = []
    active: list[Track] = []
    for frame, boxes, frame_scores in zip(frames, detections, scores):
        still = []
        for track in active:
            (still if frame - track.frames[-1] <= settings.max_gap else finished).append(track)
        active = still
        taken_tracks: set[int] = set()
        taken_boxes: set[int] = set()
        if active and len(boxes):
            last = np.stack([t.boxes[-1] for t in active])
            overlaps = iou(last[:, None, :], np.asarray(boxes)[None, :, :])  # (tracks, boxes)
            for flat in np.argsort(-overlaps, axis=None):
                t, b = divmod(int(flat), overlaps.shape[1])
                if overlaps[t, b] < settings.track_iou:
                    break
                if t in taken_tracks or b in taken_boxes:
                    continue
                taken_tracks.add(t)
                taken_boxes.add(b)
                active[t].frames.append(frame)
                active[t].boxes.append(boxes[b])
                active[t].scores.append(float(frame_scores[b]))
        for b in range(len(boxes)):
            if b not in taken_boxes:
                active.append(Track([frame], [boxes[b]], [float(frame_scores[b])]))
    tracks = finished + active
    tracks.sort(key=lambda t: (t.frames[0], t.boxes[0][0]))
    return tracks


def cut_track(track: Track, index: int, end_limit: int, settings: TubeSettings) -> list[Tube]:
    """Split one track into tubes by IoU with each tube's first box and ``max_frames``.

    A tube covers from its first detection to the frame before the next tube's first
    detection (tubes cut by IoU are contiguous) or, at the track's end, one stride past its
    last detection (the face was there until at least the next missed detection), clipped
    to ``end_limit``.
    """
    tubes: list[Tube] = []
    start = 0  # index into track.frames of the tube's first detection
    for k in range(1, len(track.frames) + 1):
        closing = k == len(track.frames)
        if not closing:
            gap = track.frames[k] - track.frames[k - 1] > settings.max_gap
            drifted = float(iou(track.boxes[k], track.boxes[start])) < settings.iou_with_initial
            too_long = track.frames[k] - track.frames[start] >= settings.max_frames
            if not (gap or drifted or too_long):
                continue
            end = track.frames[k] if not gap else track.frames[k - 1] + settings.stride
        else:
            end = track.frames[k - 1] + settings.stride
        end = min(end, end_limit, track.frames[start] + settings.max_frames)
        tubes.append(make_tube(track, index, start, k, end, settings))
        start = k
    return tubes


def make_tube(track: Track, index: int, first: int, stop: int, end: int, settings: TubeSettings) -> Tube:
    boxes = np.stack(track.boxes[first:stop])
    face = union_box(boxes)
    start = track.frames[first]
    reason = None
    if end - start < settings.min_frames:
        reason = TOO_SHORT
    elif min(face[2] - face[0], face[3] - face[1]) < settings.min_size:
        reason = TOO_SMALL
    return Tube(index, start, end, enlarge(face, settings.increase_area), face, stop - first,
                float(np.mean(track.scores[first:stop])), reason)


def find_tubes(frames: list[int], detections: list[np.ndarray], scores: list[np.ndarray], end_limit: int,
               settings: TubeSettings, reference: dict[int, np.ndarray] | None = None) -> list[Tube]:
    """All tubes (kept and rejected) of one stretch of video.

    ``frames``: the frame indices detection ran on (ascending), ``detections[i]`` the (N, 4)
    boxes found there, ``scores[i]`` their scores; ``end_limit`` the first frame after the
    stretch; ``reference``: frame -> the reference box (VoxCeleb txt track), if any.
    """
    if reference is not None:
        tracks = link_to_reference(frames, detections, scores, reference, settings.min_reference_iou)
    else:
        tracks = link_tracks(frames, detections, scores, settings)
    return [tube for index, track in enumerate(tracks) for tube in cut_track(track, index, end_limit, settings)]
