"""Turning user mistakes into one clear line instead of a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import typer

from fomm_core.errors import FommError

F = TypeVar("F", bound=Callable)

WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):"


def one_line(exc: FommError) -> str:
    """The error's own line, also for one raised in a DataLoader worker.

    torch re-raises a worker's exception as the same type with the worker's traceback folded
    into the message; the user needs its last line, without the type name.
    """
    message = str(exc)
    if WORKER_TRACEBACK not in message:
        return message
    last = message.rstrip().rsplit("\n", 1)[-1]
    name, sep, text = last.partition(": ")
    return text if sep and name.replace(".", "").replace("_", "").isalnum() else last


def user_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FommError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


def metrics_dir_option():
    """``--metrics-dir``: where a stage writes the numbers DVC compares (see pipeline/metrics_file.py)."""
    from pipeline.metrics_file import METRICS_DIR

    return typer.Option(METRICS_DIR, "--metrics-dir",
                        help="Git-tracked folder for this stage's DVC metrics and plot tables (numbers only).")
