"""Output safety: a command writes only where it may, and never loses what it did not write.

Rules every ``fomm`` command follows through these helpers:

- ``--out`` is never one of the command's inputs, never contains one and never lies inside
  one (replacing it would delete the input; writing into it would change it).
- An existing output folder is replaced only when this command wrote it: each output
  folder carries a small marker file (:data:`MARKER`) naming the command. Anything else in
  the way is a one-line error, so a ``PRECIOUS.txt`` placed there survives.
- An existing output file is replaced only when the caller recognises it as its own.
- The location is checked for writability before any work, so a long run never dies at
  its final save.
- Temporaries of killed runs (see :mod:`fomm_core.atomic`) are removed on the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .atomic import atomic_dir, is_temporary, remove_stale_temporaries, write_text_atomic
from .errors import FommError

MARKER = ".fomm-output.json"
PathLike = str | os.PathLike


def _absolute(path: PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _real(path: PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def check_not_input(out: PathLike, inputs: Iterable[PathLike | None], flag: str = "--out") -> None:
    """Refuse an output that is, contains, or lies inside one of the inputs."""
    target = _real(out)
    for item in inputs:
        if item is None or os.fspath(item) == "":
            continue
        source = _real(item)
        if target == source:
            raise FommError(f"{flag} {out} is the input {item}; choose another output")
        if target in source.parents:
            raise FommError(f"{flag} {out} contains the input {item}; choose another output")
        if source in target.parents and source.is_dir():
            raise FommError(f"{flag} {out} lies inside the input folder {item}; choose an output outside it")


def ensure_writable(folder: PathLike, flag: str = "--out") -> None:
    """Create ``folder`` (and parents) and prove a file can be written there, or one line."""
    folder = _absolute(folder)
    for parent in (folder, *folder.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise FommError(f"{flag}: {parent} is a file, not a folder; choose another output location")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".fomm-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FommError(f"{flag}: cannot write in {folder} ({exc.strerror or exc}); "
                        f"choose a writable output location") from None


def folder_owner(folder: PathLike) -> str | None:
    """The command named by the folder's marker, or None when it has none (or a broken one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    command = data.get("command") if isinstance(data, dict) else None
    return command if isinstance(command, str) else None


def _foreign_entry(folder: Path, legacy: Iterable[str]) -> str | None:
    """The first entry that shows the folder is not ours, or None when it may be replaced."""
    names = sorted(entry.name for entry in os.scandir(folder))
    if any(name in names for name in legacy):
        return None  # written by an earlier version of the command (its manifest is there)
    for name in names:
        if name != MARKER and not is_temporary(name):
            return name
    return None


def check_output_dir(out: PathLike, command: str, inputs: Iterable[PathLike | None] = (),
                     legacy: Iterable[str] = (), flag: str = "--out") -> Path:
    """All the checks for a folder output; returns its absolute path.

    ``legacy`` names files an earlier version of ``command`` wrote into its output (e.g. its
    manifest), so folders written before markers existed are still recognised.
    """
    check_not_input(out, inputs, flag)
    path = _absolute(out)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise FommError(f"{flag} {out} is a file, not a folder; choose another output folder")
        owner = folder_owner(path)
        if owner is not None and owner != command:
            raise FommError(f"{flag} {out} holds the output of `fomm {owner}`, not `fomm {command}`; "
                            f"choose another output folder")
        if owner is None:
            foreign = _foreign_entry(path, legacy)
            if foreign is not None:
                raise FommError(f"{flag} {out} already holds {foreign!r}, which `fomm {command}` did not write; "
                                f"choose an empty or new output folder (nothing was changed)")
    ensure_writable(path.parent, flag)
    return path


def _write_marker(folder: Path, command: str) -> None:
    write_text_atomic(folder / MARKER, json.dumps({"command": command, "format": 1}) + "\n")


@contextlib.contextmanager
def replace_output_dir(out: PathLike, command: str, inputs: Iterable[PathLike | None] = (),
                       legacy: Iterable[str] = (), flag: str = "--out") -> Iterator[Path]:
    """Build a whole output folder in a temporary and swap it in; only over our own output."""
    path = check_output_dir(out, command, inputs, legacy, flag)
    remove_stale_temporaries(path.parent)
    with atomic_dir(path) as tmp:
        _write_marker(tmp, command)
        yield tmp


def claim_output_dir(out: PathLike, command: str, inputs: Iterable[PathLike | None] = (),
                     legacy: Iterable[str] = (), flag: str = "--out", recursive_cleanup: bool = True) -> Path:
    """Take an output folder that is written in place (resumable stages); returns its path.

    Same checks as :func:`replace_output_dir`; then marks the folder as ours and removes the
    temporaries that killed runs left in it.
    """
    path = check_output_dir(out, command, inputs, legacy, flag)
    ensure_writable(path, flag)
    if folder_owner(path) != command:
        _write_marker(path, command)
    remove_stale_temporaries(path, recursive=recursive_cleanup)
    return path


def check_output_file(out: PathLike, command: str, inputs: Iterable[PathLike | None] = (),
                      is_ours: Callable[[Path], bool] | None = None, flag: str = "--out") -> Path:
    """All the checks for a single-file output; returns its absolute path.

    An existing file is replaced only when ``is_ours`` recognises it (a format key, a
    metadata stamp); without a recogniser an existing file is refused.
    """
    check_not_input(out, inputs, flag)
    path = _absolute(out)
    if path.is_dir():
        raise FommError(f"{flag} {out} is a folder; give a file path")
    if path.exists() and (is_ours is None or not is_ours(path)):
        raise FommError(f"{flag} {out} exists and was not written by `fomm {command}`; "
                        f"choose another path or move it away (nothing was changed)")
    ensure_writable(path.parent, flag)
    remove_stale_temporaries(path.parent)
    return path
