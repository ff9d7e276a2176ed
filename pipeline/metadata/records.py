"""The row types passed between the readers, the checks and the table writer."""

from __future__ import annotations

from dataclasses import dataclass

# Stable machine-readable reject codes (the ``reason`` column of rejects.parquet).
DUPLICATE = "duplicate"
CONFLICTING_BOX = "conflicting_box"
EMPTY_BOX = "empty_box"
OUTSIDE_FRAME = "outside_frame"
TOO_SHORT = "too_short"
MALFORMED_ID = "malformed_id"
MALFORMED_ROW = "malformed_row"
UNREADABLE_VIDEO = "unreadable_video"  # a video of an own-videos folder that ffprobe cannot read
REASONS = (DUPLICATE, CONFLICTING_BOX, EMPTY_BOX, OUTSIDE_FRAME, TOO_SHORT, MALFORMED_ID, MALFORMED_ROW,
           UNREADABLE_VIDEO)

YOUTUBE_URL = "https://www.youtube.com/watch?v={video_id}"
# Raw ids kept in the rejects table are for people reading it; cap hostile lengths.
MAX_RAW_ID_CHARS = 64


def short(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_RAW_ID_CHARS else text[: MAX_RAW_ID_CHARS - 3] + "..."


class RowError(ValueError):
    """A row or file that cannot be parsed; the message becomes the reject detail."""

    def __init__(self, detail: str, line: int | None = None, reason: str = MALFORMED_ROW):
        super().__init__(detail)
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Candidate:
    """One parsed clip before the checks; ids are still untrusted strings.

    ``width == 0`` means the frame width is unknown (VoxCeleb1 txt pixels at height 360),
    ``width == height == 1`` that the box is in fractions of the frame (VoxCeleb2 txt).
    """

    source: str
    row: int
    video_id: str
    person_id: str
    partition: str
    start: int
    end: int
    fps: float
    left: float
    top: float
    right: float
    bottom: float
    width: int
    height: int
    url: str

    def identity(self) -> tuple:
        """Everything that describes the clip, without where it was read from."""
        return (
            self.video_id, self.person_id, self.partition, self.start, self.end, self.fps,
            self.left, self.top, self.right, self.bottom, self.width, self.height, self.url,
        )


@dataclass(frozen=True)
class Reject:
    source: str
    row: int
    video_id: str
    person_id: str
    start: int | None
    end: int | None
    reason: str
    detail: str


@dataclass(frozen=True)
class Clip:
    """A clip that passed every check, with its box possibly clamped to the frame."""

    clip_id: str
    video_id: str
    person_id: str
    partition: str
    start: int
    end: int
    fps: float
    left: float
    top: float
    right: float
    bottom: float
    width: int
    height: int
    url: str
    source: str
    box_clipped: bool
