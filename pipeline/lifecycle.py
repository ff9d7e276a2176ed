"""A ``fomm`` process dies with whatever started it.

``kill -9`` of ``dvc repro`` (or of a torchrun agent) must not leave an orphaned stage
writing its outputs. Two mechanisms, because neither alone is enough:

- :func:`watch_parent` (the ``fomm`` process itself): a daemon thread that checks once a
  second whether the parent is still the process it was at start (PID and start time),
  looking through ``sh -c`` wrappers (DVC runs stages through ``$SHELL -c``, and dash does
  not ``exec`` the command, so the shell would outlive DVC and keep the stage's parent
  alive). ``PR_SET_PDEATHSIG`` is not used here: it fires when the *thread* that forked us
  exits, which a multi-threaded parent may do long before it does.
- :func:`die_with_parent` / :func:`child_preexec` for processes a stage starts itself (pool
  workers, ffmpeg): ``PR_SET_PDEATHSIG`` with SIGKILL, set in the child.

A run meant to outlive its terminal is detected and left alone: ``nohup`` (SIGHUP ignored),
``setsid`` (a session leader), or ``FOMM_DETACHED=1``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

PR_SET_PDEATHSIG = 1
SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "mksh", "fish", "busybox"}
POLL_SECONDS = 1.0


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved once, in the parent: a preexec_fn runs between fork and exec of a threaded
# process (crop forks ffmpeg from many threads), where dlopen's loader lock may be held
# by a thread that no longer exists in the child; only the bare foreign call is made there.
_PRCTL = _load_prctl()


def _set_pdeathsig(sig: int) -> bool:
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def die_with_parent() -> None:
    """In a child process (pool initializer): be killed when the parent process dies."""
    parent = os.getppid()
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


def child_preexec() -> None:
    """``preexec_fn`` for subprocesses (ffmpeg, ffprobe): killed when the stage dies."""
    _set_pdeathsig(signal.SIGKILL)


def _stat(pid: int) -> tuple[int, str] | None:
    """(start time, command name) of a live process, from /proc; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1: raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: gone for our purposes
        return None
    return int(fields[19]), name  # field 22 of stat: start time in clock ticks


def _parent_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[1])


def _is_shell_wrapper(pid: int, name: str) -> bool:
    if name not in SHELLS:
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"-c" in args[1:]


def ancestors_to_watch() -> list[tuple[int, int]]:
    """(pid, start time) of the parent, and of further ancestors while they are ``sh -c``."""
    watched: list[tuple[int, int]] = []
    pid = os.getppid()
    for _ in range(8):
        if pid is None or pid <= 1:
            break
        info = _stat(pid)
        if info is None:
            break
        watched.append((pid, info[0]))
        if not _is_shell_wrapper(pid, info[1]):
            break
        pid = _parent_of(pid)
    return watched


def detached() -> bool:
    """Started to outlive its terminal (nohup, setsid) or asked to (FOMM_DETACHED=1)."""
    if os.environ.get("FOMM_DETACHED", "") not in ("", "0"):
        return True
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return False  # torchrun starts each worker as a session leader; it must still die with torchrun
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        return True
    return os.getsid(0) == os.getpid()


def watch_parent(poll_seconds: float = POLL_SECONDS) -> threading.Thread | None:
    """Start the watcher thread (Linux); returns it, or None when nothing is watched."""
    if detached() or not Path("/proc/self/stat").exists():
        return None
    watched = ancestors_to_watch()
    if not watched:
        return None

    def run() -> None:
        event = threading.Event()
        while not event.wait(poll_seconds):
            for pid, start in watched:
                info = _stat(pid)
                if info is None or info[0] != start:
                    os.write(2, f"fomm: the process that started this one (PID {pid}) is gone; stopping\n".encode())
                    os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=run, name="fomm-parent-watch", daemon=True)
    thread.start()
    return thread
