"""A rich progress bar shared by the stages, quiet when output is not a terminal."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        # Under CI or a log file a bar only adds noise; the summary line says the result.
        disable=not console.is_terminal,
    )


def track(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    with progress_bar() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def summary(text: str) -> None:
    """The one line each stage ends with: what it did, in numbers."""
    Console(soft_wrap=True).print(text, highlight=False)


def log_line(*args, **kwargs) -> None:
    """Progress messages from library code (its ``log`` callbacks): stderr, flushed at once."""
    kwargs.pop("flush", None)
    print(*args, file=sys.stderr, flush=True, **kwargs)
