"""A rich progress bar shared by the stages, quiet when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterable, Iterator, TypeVar

from fomm_core.progress import OnStep, StepReport, losses_text, report_line

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


@contextlib.contextmanager
def step_progress(description: str, total: int, done: int = 0) -> Iterator[OnStep]:
    """A training loop's display, as the ``on_step`` callback it yields.

    On a terminal: a bar with step/total, the step's losses, samples/s, elapsed and ETA.
    Elsewhere (a log file, CI, DVC's captured output) the bar is off and each log point
    (every ``log_every`` steps) prints one line with the mean losses since the previous one.
    """
    if not console.is_terminal:
        def line(report: StepReport) -> None:
            if report.logged is not None:
                log_line(report_line(description, report))

        yield line
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, completed=done, losses="", rate="")

        def update(report: StepReport) -> None:
            bar.update(task, completed=report.step, losses=losses_text(report.losses),
                       rate=f"{report.samples_per_second:.3g} samples/s")

        yield update


def summary(text: str) -> None:
    """The one line each stage ends with: what it did, in numbers."""
    Console(soft_wrap=True).print(text, highlight=False)


def log_line(*args, **kwargs) -> None:
    """Progress messages from library code (its ``log`` callbacks): stderr, flushed at once."""
    kwargs.pop("flush", None)
    print(*args, file=sys.stderr, flush=True, **kwargs)
