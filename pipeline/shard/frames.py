"""Streaming decode of a clip mp4, one frame at a time, through an ffmpeg rawvideo pipe.

Only one frame is held in memory at once, so memory does not grow with clip length.
Frames come out as BGR uint8 (H, W, 3), the layout ``cv2.imencode`` expects.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from fomm_core.errors import FommError
from fomm_core.tool_paths import tool_arg
from pipeline.lifecycle import child_preexec


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int


def probe(path: Path) -> VideoInfo:
    """Width and height of the first video stream."""
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0",
           "-show_entries", "stream=width,height", "-of", "json", tool_arg(path)]
    result = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=child_preexec)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise FommError(f"{path}: ffprobe failed ({last[-200:]}); rerun fomm crop")
    streams = json.loads(result.stdout or "{}").get("streams") or []
    if not streams:
        raise FommError(f"{path}: no video stream; rerun fomm crop")
    return VideoInfo(int(streams[0]["width"]), int(streams[0]["height"]))


def iter_frames(path: Path, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Yield every decoded frame of ``path`` in order, as BGR uint8 arrays."""
    info = info or probe(path)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", tool_arg(path), "-map", "0:v:0",
           "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
    frame_bytes = info.width * info.height * 3
    err_file = tempfile.TemporaryFile()  # a file, not a pipe: a chatty ffmpeg cannot block
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, preexec_fn=child_preexec)
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(frame_bytes)
            if not buf:
                break
            if len(buf) != frame_bytes:
                raise FommError(f"{path}: truncated frame from ffmpeg; rerun fomm crop")
            yield np.frombuffer(buf, dtype=np.uint8).reshape(info.height, info.width, 3)
        if proc.wait() != 0:
            err_file.seek(0)
            lines = err_file.read().decode(errors="replace").strip().splitlines() or ["no message"]
            raise FommError(f"{path}: ffmpeg could not decode ({lines[-1][-200:]}); rerun fomm crop")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        err_file.close()
