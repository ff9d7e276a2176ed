"""Crop boxes: from metadata units to source pixels, squared, enlarged and kept in frame.

The published VoxCeleb boxes are in the units of the frame the annotators saw (often
not the resolution we downloaded) and are not square; resizing a non-square box to
256x256 squashes faces, so by default the box becomes a square around its centre.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, ``right``/``bottom`` exclusive, in pixels."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


@dataclass(frozen=True)
class PixelBox:
    """An integer crop (what ffmpeg's crop filter takes): offset and size."""

    x: int
    y: int
    w: int
    h: int

    def as_box(self) -> Box:
        return Box(float(self.x), float(self.y), float(self.x + self.w), float(self.y + self.h))


def scale_box(box: Box, meta_width: float, meta_height: float, real_width: int, real_height: int) -> Box:
    """``box`` given in a ``meta_width x meta_height`` frame, in pixels of the real frame.

    ``meta_width == 0`` means the width is unknown: scale x like y (VoxCeleb1 boxes are
    pixels of a frame scaled to height 360, whatever its aspect).
    """
    if meta_height <= 0:
        raise ValueError(f"metadata height must be positive, got {meta_height}")
    sy = real_height / meta_height
    sx = real_width / meta_width if meta_width > 0 else sy
    return Box(box.left * sx, box.top * sy, box.right * sx, box.bottom * sy)


def _even_size(size: float, limit: int) -> int:
    """``size`` rounded down to even (no chroma rounding in 4:2:0), at most ``limit``."""
    return min(max(2, int(min(size, limit)) // 2 * 2), limit)


def _offset(centre: float, size: int, limit: int) -> int:
    """An even offset putting ``size`` around ``centre``, shifted to stay in ``[0, limit)``."""
    offset = round((centre - size / 2) / 2) * 2
    max_offset = limit - size
    return int(min(max(offset, 0), max_offset - (max_offset % 2)))


def crop_box(box: Box, frame_width: int, frame_height: int, square: bool,
             increase_area: float) -> PixelBox:
    """The crop for ``box`` (already in frame pixels).

    With ``square`` the side is ``max(w, h) * (1 + increase_area)`` around the box
    centre; otherwise each side grows by ``increase_area``. The result is shifted to
    stay inside the frame and shrunk only when larger than the frame.
    """
    if frame_width < 1 or frame_height < 1:
        raise ValueError(f"frame size must be positive, got {frame_width}x{frame_height}")
    cx = (box.left + box.right) / 2
    cy = (box.top + box.bottom) / 2
    grow = 1.0 + max(increase_area, 0.0)
    if square:
        side = _even_size(max(box.width, box.height) * grow, min(frame_width, frame_height))
        w = h = side
    else:
        w = _even_size(box.width * grow, frame_width)
        h = _even_size(box.height * grow, frame_height)
    return PixelBox(_offset(cx, w, frame_width), _offset(cy, h, frame_height), w, h)


def lies_outside(box: Box, frame_width: int, frame_height: int) -> bool:
    """Whether ``box`` (frame pixels) shares no area with the frame: there is no face to crop."""
    return box.right <= 0 or box.bottom <= 0 or box.left >= frame_width or box.top >= frame_height
