"""What ffprobe says about a source file: real frame size, duration, audio presence.

The crop box must be scaled to the resolution actually downloaded (which may differ
from the metadata's), and a clip past the end or without audio is better reported
before running ffmpeg than guessed from its error output.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from fomm_core.tool_paths import tool_arg
from pipeline.lifecycle import child_preexec


class ProbeError(Exception):
    """ffprobe could not read the file (corrupt, truncated, not a video)."""


@dataclass(frozen=True)
class SourceInfo:
    width: int
    height: int
    fps: float
    duration: float | None  # seconds, None when the container does not say
    has_audio: bool


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _float(text: object) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _rotation(stream: dict) -> int:
    """Display rotation in degrees; ffmpeg auto-rotates, so 90/270 swap width and height."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            try:
                return int(round(float(side["rotation"]))) % 360
            except (TypeError, ValueError):
                return 0
    tag = (stream.get("tags") or {}).get("rotate")
    try:
        return int(tag) % 360 if tag is not None else 0
    except ValueError:
        return 0


def probe(path: Path, timeout: float = 60.0) -> SourceInfo:
    """Stream facts of ``path``; raises :class:`ProbeError` if it is not a readable video."""
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", tool_arg(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              preexec_fn=child_preexec)
    except subprocess.TimeoutExpired:
        raise ProbeError(f"ffprobe timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise ProbeError(_last_line(proc.stderr) or f"ffprobe exit code {proc.returncode}")
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise ProbeError("ffprobe printed no JSON") from None
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not (s.get("disposition") or {}).get("attached_pic")), None)
    if video is None:
        raise ProbeError("no video stream")
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise ProbeError("video stream has no frame size")
    if _rotation(video) in (90, 270):
        width, height = height, width
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    duration = _float(video.get("duration")) or _float((data.get("format") or {}).get("duration"))
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    return SourceInfo(width, height, fps, duration, has_audio)


def count_video_frames(path: Path, timeout: float = 60.0) -> int:
    """Frames in the first video stream of ``path``, by counting packets (no decoding)."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
           "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", tool_arg(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              preexec_fn=child_preexec)
    except subprocess.TimeoutExpired:
        return 0
    text = proc.stdout.strip().split(",")[0] if proc.returncode == 0 else ""
    return int(text) if text.isdigit() else 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
