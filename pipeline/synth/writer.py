"""Muxing rendered frames and a float audio track into an H.264 + AAC mp4 with ffmpeg.

Frames are streamed as raw BGR over a pipe (no intermediate images); the audio goes
through a temporary 16-bit WAV. ffmpeg runs from an argument list, never a shell string,
and the mp4 appears under its final name only once ffmpeg has finished successfully.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError


@dataclass(frozen=True)
class EncodeSettings:
    width: int
    height: int
    fps: int
    sample_rate: int
    crf: int = 17
    preset: str = "veryfast"
    threads: int = 0  # x264 threads, 0 = ffmpeg's choice
    audio_bitrate: str = "64k"


def ffmpeg_binary() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise FommError("ffmpeg not found on PATH; install ffmpeg (e.g. apt-get install ffmpeg)")
    return path


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM; ``audio`` is float in -1..1."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def encode_command(ffmpeg: str, wav: Path, target: Path, s: EncodeSettings) -> list[str]:
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{s.width}x{s.height}", "-r", str(s.fps),
        "-i", "pipe:0",
        "-i", str(wav),
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", s.preset, "-crf", str(s.crf), "-pix_fmt", "yuv420p",
        "-threads", str(s.threads), "-r", str(s.fps),
        "-c:a", "aac", "-b:a", s.audio_bitrate, "-ar", str(s.sample_rate), "-ac", "1",
        "-movflags", "+faststart",
        str(target),
    ]


def encode_mp4(
    target: Path, frames: Iterable[np.ndarray], audio: np.ndarray, settings: EncodeSettings
) -> int:
    """Write ``target`` from BGR uint8 frames and float audio; returns the number of frames."""
    ffmpeg = ffmpeg_binary()
    count = 0
    with tempfile.TemporaryDirectory(prefix=".synth-audio.", dir=target.parent) as tmp_dir:
        wav = Path(tmp_dir) / "audio.wav"
        write_wav(wav, audio, settings.sample_rate)
        with atomic_path(target) as tmp_mp4, tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(encode_command(ffmpeg, wav, tmp_mp4, settings),
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
            try:
                assert proc.stdin is not None
                for frame in frames:
                    if frame.shape != (settings.height, settings.width, 3) or frame.dtype != np.uint8:
                        raise ValueError(f"frame {count} has shape {frame.shape} {frame.dtype}")
                    proc.stdin.write(np.ascontiguousarray(frame).data)
                    count += 1
                proc.stdin.close()
            except BrokenPipeError:
                pass
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
            if code != 0:
                errors.seek(0)
                lines = errors.read().decode("utf-8", "replace").strip().splitlines()
                detail = lines[-1] if lines else f"exit code {code}"
                raise FommError(f"ffmpeg failed writing {target.name}: {detail}")
    return count
