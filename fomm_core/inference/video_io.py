"""Streaming video in and out through ffmpeg pipes, so memory stays flat for long videos.

The reader decodes (optionally crops and) resizes in ffmpeg and yields uint8 RGB batches;
the writer pipes raw frames to an H.264 encoder, muxes the audio of another file when it
has one, and renames the temporary output into place only after ffmpeg succeeded.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..atomic import atomic_path
from ..errors import FommError
from ..tool_paths import tool_arg


STAMP = "written by fomm"  # the container comment of every video we encode (see written_by_fomm)
FRAME_SLACK = 1  # containers may list one frame more than a decoder returns


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    num_frames: int  # from the container; 0 when unknown
    has_audio: bool


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, frame count and audio presence of a video file (ffprobe)."""
    path = Path(path)
    if not path.is_file():
        raise FommError(f"video not found: {path}")
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", tool_arg(path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise FommError(f"{path}: not a readable video ({detail})")
    streams = json.loads(result.stdout or "{}").get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if video is None:
        raise FommError(f"{path}: has no video stream")
    rate = video.get("avg_frame_rate") or video.get("r_frame_rate") or "0/1"
    try:
        fps = float(Fraction(rate)) if rate != "0/0" else 0.0
    except (ValueError, ZeroDivisionError):
        fps = 0.0
    if fps <= 0:
        fps = 25.0
    frames = int(video.get("nb_frames") or 0) if str(video.get("nb_frames", "")).isdigit() else 0
    return VideoInfo(int(video["width"]), int(video["height"]), fps, frames,
                     any(s.get("codec_type") == "audio" for s in streams))


def written_by_fomm(path: str | os.PathLike) -> bool:
    """True for a video this package encoded (its container comment is :data:`STAMP`).

    Commands replace an existing output video only when it is one of ours.
    """
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", tool_arg(path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        return False
    tags = json.loads(result.stdout or "{}").get("format", {}).get("tags", {})
    return any(k.lower() == "comment" and v == STAMP for k, v in tags.items())


def crop_filter(box: tuple[int, int, int, int] | None) -> str:
    """ffmpeg crop for an integer (left, top, right, bottom) box; '' when None."""
    if box is None:
        return ""
    left, top, right, bottom = (int(v) for v in box)
    return f"crop={right - left}:{bottom - top}:{left}:{top},"


def center_square(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred square of a frame: non-square inputs are cropped, never squashed."""
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def read_video_batches(path: str | os.PathLike, size: int, batch: int = 8,
                       box: tuple[int, int, int, int] | None = None) -> Iterator[np.ndarray]:
    """Frames of ``path`` as uint8 (B, size, size, 3) RGB batches, decoded as they are used.

    ``box`` crops each frame first (default: the centred square). ffmpeg is stopped if
    the consumer stops early. A file that decodes to fewer frames than its container lists
    (truncated, corrupt) is an error naming both counts, never a silently short result.
    """
    info = probe_video(path)
    box = box if box is not None else center_square(info.width, info.height)
    vf = f"{crop_filter(box)}scale={size}:{size}:flags=area,format=rgb24"
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", tool_arg(path), "-map", "0:v:0", "-vf", vf,
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    yield from _pipe_frames(cmd, path, size, size, batch, info.num_frames)


def read_frames(path: str | os.PathLike, batch: int = 8, start: float = 0.0,
                duration: float | None = None) -> Iterator[np.ndarray]:
    """Full-size frames of ``path`` as uint8 (B, H, W, 3) RGB batches, from ``start`` seconds
    for ``duration`` seconds (all when None), decoded as they are used."""
    info = probe_video(path)
    cmd = ["ffmpeg", "-nostdin", "-v", "error"]
    if start > 0:
        cmd += ["-ss", f"{start:.3f}"]
    cmd += ["-i", tool_arg(path)]
    if duration is not None:
        cmd += ["-t", f"{duration:.3f}"]
    cmd += ["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    partial = start > 0 or duration is not None
    yield from _pipe_frames(cmd, path, info.height, info.width, batch, 0 if partial else info.num_frames)


def _pipe_frames(cmd: list[str], path, height: int, width: int, batch: int,
                 expected: int) -> Iterator[np.ndarray]:
    """Run ``cmd`` (raw RGB on stdout) and yield (B, height, width, 3) batches; ffmpeg is
    stopped if the consumer stops early; a decoding error, or fewer frames than ``expected``
    (0: unknown), is a FommError."""
    frame_bytes = height * width * 3
    decoded = 0
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        finished = False
        try:
            pending: list[np.ndarray] = []
            while True:
                data = proc.stdout.read(frame_bytes)  # type: ignore[union-attr]
                if len(data) < frame_bytes:
                    break
                pending.append(np.frombuffer(data, np.uint8).reshape(height, width, 3))
                decoded += 1
                if len(pending) == batch:
                    yield np.stack(pending)
                    pending = []
            if pending:
                yield np.stack(pending)
                pending = []
            finished = True
        finally:
            if not finished:
                proc.kill()
            proc.stdout.close()  # type: ignore[union-attr]
            code = proc.wait()
        if not finished:
            return
        errors.seek(0)
        messages = errors.read().decode(errors="replace").strip().splitlines()
        if code != 0:
            raise FommError(f"{path}: decoding failed ({(messages or ['unknown error'])[-1]})")
        if expected and decoded + FRAME_SLACK < expected:
            detail = f": {messages[-1]}" if messages else ""
            raise FommError(f"{path}: decoded {decoded} of the {expected} frames the container lists "
                            f"(truncated or corrupt{detail}); repair or re-encode the video")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise FommError(f"image not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FommError(f"{path}: not a readable image (PNG, JPEG, ...)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_square(image: np.ndarray, size: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Crop ``box`` (default: centred square) and resize to size x size (area filter)."""
    left, top, right, bottom = box if box is not None else center_square(image.shape[1], image.shape[0])
    crop = image[top:bottom, left:right]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


class VideoWriter:
    """Pipe uint8 RGB frames to ffmpeg (H.264, yuv420p); optionally mux another file's audio.

    Use as a context manager: the output appears (atomically) only when the block ends
    without error and ffmpeg succeeded. ``audio_from`` is used only when it has audio.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float,
                 audio_from: str | os.PathLike | None = None, crf: int = 18, preset: str = "veryfast",
                 audio_start: float = 0.0):
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.audio_from = audio_from
        self.audio_start = audio_start  # seconds into audio_from where the video starts
        self.crf, self.preset = crf, preset
        self.frames_written = 0

    def _command(self, tmp: Path) -> list[str]:
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
               "-r", f"{self.fps:.6g}", "-i", "-"]
        if self.audio_from is not None:
            if self.audio_start > 0:
                cmd += ["-ss", f"{self.audio_start:.3f}"]
            cmd += ["-i", tool_arg(self.audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k",
                    "-shortest"]
        cmd += ["-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
                "-metadata", f"comment={STAMP}", "-movflags", "+faststart", str(tmp)]
        return cmd

    def __enter__(self) -> "VideoWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._errors = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(self._command(tmp), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._errors)
        return self

    def write(self, frames: np.ndarray) -> None:
        """uint8 (H, W, 3) or (B, H, W, 3) RGB frames."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"expected uint8 frames of {self.height}x{self.width}x3, got {frames.dtype} {frames.shape}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())  # type: ignore[union-attr]
        except BrokenPipeError:
            raise FommError(f"{self.path}: ffmpeg stopped while encoding ({self._error_line()})") from None
        self.frames_written += len(frames)

    def _error_line(self) -> str:
        self._errors.seek(0)
        return (self._errors.read().decode(errors="replace").strip().splitlines() or ["unknown error"])[-1]

    def __exit__(self, exc_type, exc, tb) -> bool:
        failure: FommError | None = None
        try:
            try:
                self._proc.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
            if exc is not None:
                self._proc.kill()
            code = self._proc.wait()
            if exc is None and code != 0:
                failure = FommError(f"{self.path}: ffmpeg failed to encode ({self._error_line()})")
            elif exc is None and self.frames_written == 0:
                failure = FommError(f"{self.path}: no frames to write")
        finally:
            self._errors.close()
        error = exc if exc is not None else failure
        if error is None:
            self._atomic.__exit__(None, None, None)  # rename into place
            return False
        self._atomic.__exit__(type(error), error, error.__traceback__)  # removes the temporary file
        if failure is not None:
            raise failure
        return False
