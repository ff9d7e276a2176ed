"""Turning user mistakes into one clear line instead of a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

import typer

from fomm_core.errors import FommError

F = TypeVar("F", bound=Callable)


def user_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FommError as exc:
            print(f"error: {exc}", file=sys.stderr)
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
