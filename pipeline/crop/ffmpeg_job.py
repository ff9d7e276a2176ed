"""The one ffmpeg pass per clip: seek, resample to 25 fps, crop, resize, encode + WAV.

One process with two outputs (video and audio) instead of frame-by-frame Python: the
decoder, filters and encoder stay in C, and a worker pool runs several clips at once.
The command is built with ffmpeg-python and run as an argument list (no shell), every
path absolute (a clip named ``-i...`` can never read as an option), and ffmpeg dies with
the stage (``child_preexec``).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from fomm_core.tool_paths import tool_arg
from pipeline.lifecycle import child_preexec

from .geometry import PixelBox

OUTPUT_FPS = 25
AUDIO_RATE = 16000
SAMPLES_PER_FRAME = AUDIO_RATE // OUTPUT_FPS


@dataclass(frozen=True)
class EncodeSettings:
    """How the crop is resized and encoded (the ``crop`` params)."""

    size: int = 256
    crf: int = 6
    preset: str = "veryfast"
    pix_fmt: str = "yuv444p"
    threads: int = 1


@dataclass(frozen=True)
class CropJob:
    """Frames ``[seek, seek + num_frames / 25)`` of ``source``, cropped to ``box``."""

    source: Path
    seek_seconds: float
    num_frames: int
    box: PixelBox
    with_audio: bool


def video_filters(box: PixelBox, size: int) -> str:
    """25 fps, exact crop, area-filtered resize to ``size`` square pixels (all integers)."""
    return (f"fps={OUTPUT_FPS},crop=w={box.w}:h={box.h}:x={box.x}:y={box.y}:exact=1,"
            f"scale=w={size}:h={size}:flags=area,setsar=1")


def audio_filters(num_frames: int) -> str:
    """16 kHz mono s16, exactly ``num_frames / 25`` s long (padded with silence if short)."""
    samples = num_frames * SAMPLES_PER_FRAME
    return (f"aresample={AUDIO_RATE},aformat=sample_fmts=s16:channel_layouts=mono,"
            f"apad=whole_len={samples},atrim=end_sample={samples}")


def build_command(job: CropJob, settings: EncodeSettings, video_out: Path,
                  audio_out: Path | None) -> list[str]:
    """The ffmpeg argument list; ``audio_out`` is required when ``job.with_audio``.

    Each output gets its own simple filter graph (``-filter:v``/``-filter:a``) rather
    than one ``-filter_complex``: with a shared graph ffmpeg 5 keeps decoding to the end
    of the file after both outputs are complete, which doubled the time per clip.
    """
    source = ffmpeg.input(tool_arg(job.source), ss=f"{max(job.seek_seconds, 0.0):.6f}",
                          threads=settings.threads)
    outputs = [
        ffmpeg.output(
            source["v:0"], tool_arg(video_out),
            vcodec="libx264", preset=settings.preset, crf=settings.crf,
            pix_fmt=settings.pix_fmt, threads=settings.threads, movflags="+faststart",
            r=OUTPUT_FPS,
            **{"filter:v": video_filters(job.box, settings.size), "frames:v": job.num_frames},
        )
    ]
    if job.with_audio:
        if audio_out is None:
            raise ValueError("audio_out is required for a job with audio")
        outputs.append(ffmpeg.output(
            source["a:0"], tool_arg(audio_out), acodec="pcm_s16le", ac=1, ar=AUDIO_RATE,
            **{"filter:a": audio_filters(job.num_frames)},
        ))
    graph = ffmpeg.merge_outputs(*outputs).global_args(
        "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
        "-filter_threads", str(settings.threads),
    )
    return graph.compile(cmd="ffmpeg", overwrite_output=True)


@dataclass(frozen=True)
class FfmpegRun:
    returncode: int
    stderr: str
    frames: int | None = None  # video frames written, from ffmpeg's final progress report
    timed_out: bool = False


_PROGRESS_FRAME = re.compile(r"^frame=\s*(\d+)\s*$", re.MULTILINE)


def run_command(cmd: list[str], timeout: float) -> FfmpegRun:
    """Run ffmpeg; the frame count comes from ``-progress`` (cheaper than probing the file)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, check=False, preexec_fn=child_preexec)
    except subprocess.TimeoutExpired:
        return FfmpegRun(-1, f"ffmpeg timed out after {timeout:.0f} s", timed_out=True)
    counts = _PROGRESS_FRAME.findall(proc.stdout or "")
    return FfmpegRun(proc.returncode, proc.stderr, int(counts[-1]) if counts else None)


_CORRUPT = re.compile(
    r"invalid data found|moov atom not found|error while decoding|corrupt|invalid nal|"
    r"partial file|truncat|no frame!|decode_slice_header error|could not find codec parameters",
    re.IGNORECASE,
)


def looks_corrupt(stderr: str) -> bool:
    """Whether ffmpeg's error output points at damaged input rather than ffmpeg itself."""
    return _CORRUPT.search(stderr or "") is not None


def last_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""
