"""Atomic file writes: readers see either the old file or the complete new one.

A killed process leaves at most a hidden temporary beside the target, never a half-written
output that a later stage (or a resumed run) would mistake for a finished one. Temporary
names carry the writer's host and PID (``.NAME.tmp-HOST-PID-XXXX``), so a re-run can tell
its dead predecessors' leftovers from a live writer's and remove only the former
(:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

# 8 hex digits of the host name: short, and safe in a file name whatever the host is called.
HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\..*\.tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_like_new(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual umask mode."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def temp_prefix(name: str) -> str:
    """The hidden prefix of a temporary for ``name`` written by this process."""
    return f".{name}.tmp-{HOST_TAG}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale_temporary(name: str) -> bool:
    """A temporary written on this host by a process that no longer runs.

    Temporaries from other hosts (a shared filesystem) are never judged stale here: their
    owner may be alive on its own machine.
    """
    match = _TEMP_NAME.match(name)
    return bool(match) and match["host"] == HOST_TAG and not _pid_alive(int(match["pid"]))


def is_temporary(name: str) -> bool:
    """Any writer's temporary (live or dead), by name."""
    return _TEMP_NAME.match(name) is not None


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = False) -> int:
    """Delete the temporaries that dead processes left in ``folder``; returns how many.

    Only names this module generates are considered, so nothing a user (or another tool)
    wrote is ever touched.
    """
    folder = Path(folder)
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return 0
    for entry in entries:
        if is_stale_temporary(entry.name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            removed += 1
        elif recursive and entry.is_dir(follow_symlinks=False):
            removed += remove_stale_temporaries(entry.path, recursive=True)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffix (tools like ffmpeg pick the container
    from it) unless ``suffix`` overrides it.
    """
    target = Path(os.path.abspath(target))  # absolute: safe on any tool's command line
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=temp_prefix(target.stem), suffix=".tmp" + (suffix if suffix is not None else target.suffix),
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    _chmod_like_new(tmp, is_dir=False)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; swap it in place of ``target`` on success.

    Callers that may meet a folder they did not write use
    :func:`fomm_core.outputs.replace_output_dir`, which checks ownership first.
    """
    target = Path(os.path.abspath(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent))
    _chmod_like_new(tmp, is_dir=True)
    try:
        yield tmp
        if target.exists():
            # The old folder moves to a temporary name of this process: if we are killed
            # between the two renames, the next run removes it as stale.
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".old", dir=target.parent))
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))
