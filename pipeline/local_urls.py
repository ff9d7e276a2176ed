"""Local video locations that stay valid when the project is cloned or moved elsewhere.

An absolute ``file://`` URL in a tracked file ties ``dvc.lock`` (which hashes the files) to
the folder the project happened to live in. So a local video is written as a *relative*
url, a plain POSIX path with no scheme, relative to the folder of the table holding it:
the synthetic ``vox-metadata.csv`` says ``videos/<id>.mp4``; ``fomm metadata`` rewrites it
relative to the clips table (``../synth/videos/<id>.mp4``); ``fomm download`` turns it
into an absolute ``file://`` URL only in memory, for yt-dlp.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path, PurePosixPath

# No scheme (no ':' at all), not absolute, nothing that could read as an option.
_RELATIVE = re.compile(r"(?!-)(?!/)[^\s:\\\x00-\x1f\x7f]+", re.ASCII)


def is_relative_url(url: str) -> bool:
    """A path relative to the table that holds it (``videos/x.mp4``, ``../synth/videos/x.mp4``)."""
    return _RELATIVE.fullmatch(url) is not None


def rebase(url: str, from_folder: str | os.PathLike, to_folder: str | os.PathLike) -> str:
    """The relative ``url`` (relative to ``from_folder``) made relative to ``to_folder``."""
    target = os.path.join(os.path.abspath(from_folder), *PurePosixPath(url).parts)
    return Path(os.path.relpath(target, os.path.abspath(to_folder))).as_posix()


def file_uri(url: str, folder: str | os.PathLike) -> str:
    """The absolute ``file://`` URL of the relative ``url`` found in a table in ``folder``."""
    return Path(os.path.abspath(os.path.join(folder, posixpath.normpath(url)))).as_uri()
