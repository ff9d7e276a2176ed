"""Per-row checks (ids, box, length) and de-duplication, each failure with a reason code.

Order: ids, then the box against the frame, then the length, then duplicates among the
rows that survived (so a duplicate of a kept row is reported as ``duplicate`` and a row
never conflicts with one that was itself rejected). The first occurrence always wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from pipeline.ids import VIDEO_ID_RULE, is_person_id, is_video_id, make_clip_id

from .records import (
    CONFLICTING_BOX, DUPLICATE, EMPTY_BOX, MALFORMED_ID, OUTSIDE_FRAME, TOO_SHORT,
    Candidate, Clip, Reject, short,
)

# Float slack for boxes computed as x + w from fractions (0.7 + 0.3 > 1.0).
RELATIVE_TOLERANCE = 1e-6


def valid_video_id(value: str) -> bool:
    return value.isascii() and is_video_id(value)


def valid_person_id(value: str) -> bool:
    """ASCII only: ``pipeline.ids.PERSON_ID`` uses ``\\d``, which also matches e.g. Arabic digits."""
    return value.isascii() and is_person_id(value)


def reject(candidate: Candidate, reason: str, detail: str) -> Reject:
    return Reject(
        candidate.source, candidate.row, short(candidate.video_id), short(candidate.person_id),
        candidate.start, candidate.end, reason, detail,
    )


def check_ids(candidate: Candidate) -> Reject | None:
    """Strict ASCII ids: anything else (paths, shell syntax, lookalikes) is refused."""
    video, person = candidate.video_id, candidate.person_id
    if not valid_video_id(video):
        return reject(candidate, MALFORMED_ID, f"video id {short(video)!r} is not {VIDEO_ID_RULE}")
    if not valid_person_id(person):
        return reject(candidate, MALFORMED_ID, f"person id {short(person)!r} is not id + 5 digits")
    return None


def fit_box(candidate: Candidate, policy: str) -> tuple[tuple[float, float, float, float], bool] | Reject:
    """The box inside the frame and whether it had to be clamped, or the reject.

    A width of 0 means the frame width is unknown, so only the left edge is checked
    horizontally.
    """
    left, top, right, bottom = candidate.left, candidate.top, candidate.right, candidate.bottom
    width, height = candidate.width, candidate.height
    box_text = f"box {left:g}-{top:g}-{right:g}-{bottom:g}"
    if not (right > left and bottom > top):
        return reject(candidate, EMPTY_BOX, f"{box_text} has no area")
    frame_text = f"{width}x{height} frame" if width else f"frame of height {height}"
    if right <= 0 or bottom <= 0 or top >= height or (width and left >= width):
        return reject(candidate, OUTSIDE_FRAME, f"{box_text} lies entirely outside the {frame_text}")
    slack = RELATIVE_TOLERANCE * height
    max_x = width if width else float("inf")
    outside = left < -slack or top < -slack or bottom > height + slack or right > max_x + slack
    if outside and policy == "drop":
        return reject(candidate, OUTSIDE_FRAME, f"{box_text} reaches outside the {frame_text} (box_policy: drop)")
    fitted = (max(left, 0.0), max(top, 0.0), min(right, max_x), min(bottom, float(height)))
    return fitted, outside


def check(candidate: Candidate, policy: str, min_frames: int) -> Clip | Reject:
    failed = check_ids(candidate)
    if failed is not None:
        return failed
    fitted = fit_box(candidate, policy)
    if isinstance(fitted, Reject):
        return fitted
    (left, top, right, bottom), clipped = fitted
    frames = candidate.end - candidate.start
    if frames < min_frames:
        return reject(candidate, TOO_SHORT, f"{frames} frames, fewer than min_frames {min_frames}")
    return Clip(
        clip_id=make_clip_id(candidate.person_id, candidate.video_id, candidate.start, candidate.end),
        video_id=candidate.video_id, person_id=candidate.person_id, partition=candidate.partition,
        start=candidate.start, end=candidate.end, fps=candidate.fps,
        left=left, top=top, right=right, bottom=bottom, width=candidate.width, height=candidate.height,
        url=candidate.url, source=candidate.source, box_clipped=clipped,
    )


@dataclass
class Deduplicator:
    """Keeps the first row per clip id; later identical rows are duplicates, others conflicts."""

    seen: dict[str, tuple[Candidate, Clip]] = field(default_factory=dict)

    def add(self, candidate: Candidate, clip: Clip) -> Reject | None:
        first = self.seen.get(clip.clip_id)
        if first is None:
            self.seen[clip.clip_id] = (candidate, clip)
            return None
        kept, _ = first
        where = f"{kept.source} row {kept.row}"
        if kept.identity() == candidate.identity():
            return reject(candidate, DUPLICATE, f"same as {where}")
        names = ("video_id", "person_id", "partition", "start", "end", "fps", "left", "top",
                 "right", "bottom", "width", "height", "url")
        differ = [n for n, a, b in zip(names, kept.identity(), candidate.identity()) if a != b]
        return reject(candidate, CONFLICTING_BOX, f"clip {clip.clip_id} already read from {where} with other {', '.join(differ)}")

    def clips(self) -> list[Clip]:
        return [clip for _, clip in self.seen.values()]


def check_all(candidates: Iterable[Candidate | Reject], policy: str, min_frames: int) -> tuple[list[Clip], list[Reject]]:
    dedup = Deduplicator()
    rejects: list[Reject] = []
    for item in candidates:
        if isinstance(item, Reject):
            rejects.append(item)
            continue
        result = check(item, policy, min_frames)
        if isinstance(result, Reject):
            rejects.append(result)
            continue
        duplicate = dedup.add(item, result)
        if duplicate is not None:
            rejects.append(duplicate)
    return dedup.clips(), rejects
