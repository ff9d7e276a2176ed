"""Paths on the command lines of ffmpeg, ffprobe and yt-dlp.

A relative path whose name starts with ``-`` (a video id like ``-oProxyComm``) would be
read as an option. Absolute paths always start with ``/``, so every path handed to such a
tool goes through :func:`tool_arg`.
"""

from __future__ import annotations

import os


def tool_arg(path: str | os.PathLike) -> str:
    """``path`` made absolute (never read as an option), as a string for argv."""
    return os.path.abspath(os.fspath(path))
