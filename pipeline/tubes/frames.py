"""Every stride-th frame of a clip's time range, decoded and scaled by ffmpeg for detection.

ffmpeg resamples to 25 fps first (clip frames are 25 fps indices whatever the source
rate), keeps every ``stride``-th frame and scales frames taller than ``height`` down, so
Python only sees the frames the detector runs on.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np

from fomm_core.errors import FommError
from fomm_core.tool_paths import tool_arg
from pipeline.lifecycle import child_preexec

FPS = 25


def detection_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """(width, height) frames are decoded at: at most ``max_height`` tall, even, same aspect."""
    if height <= max_height:
        return width, height
    scaled_width = max(2, int(round(width * max_height / height / 2)) * 2)
    return scaled_width, max_height


def sampled_frames(path: Path, seek: float, num_frames: int, stride: int, width: int, height: int,
                   max_height: int) -> Iterator[tuple[int, np.ndarray]]:
    """(offset in frames from ``seek``, RGB frame) for offsets 0, stride, 2*stride... < num_frames."""
    out_w, out_h = detection_size(width, height, max_height)
    vf = f"fps={FPS},select='not(mod(n\\,{stride}))',scale={out_w}:{out_h}:flags=area"
    cmd = ["ffmpeg", "-nostdin", "-v", "error"]
    if seek > 0:
        cmd += ["-ss", f"{seek:.3f}"]
    cmd += ["-i", tool_arg(path), "-map", "0:v:0", "-t", f"{num_frames / FPS:.3f}", "-vf", vf,
            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    size = out_w * out_h * 3
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=child_preexec)
    finished = False
    k = 0
    try:
        while k * stride < num_frames:
            data = proc.stdout.read(size)  # type: ignore[union-attr]
            if len(data) < size:
                break
            yield k * stride, np.frombuffer(data, np.uint8).reshape(out_h, out_w, 3)
            k += 1
        finished = True
    finally:
        if not finished:
            proc.kill()
        proc.stdout.close()  # type: ignore[union-attr]
        errors = proc.stderr.read()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        code = proc.wait()
    if code != 0 and k == 0:
        detail = (errors.decode(errors="replace").strip().splitlines() or ["unknown error"])[-1]
        raise FommError(f"{path}: decoding failed ({detail})")
