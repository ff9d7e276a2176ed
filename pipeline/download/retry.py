"""Exponential backoff with jitter around one video's whole extract-and-download.

yt-dlp's own ``retries`` only cover a transfer that already started; a 429 or 503 on the
first request (extraction) fails at once, so the stage retries the whole attempt itself.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from .errors import Failure, classify

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (1-based): ``base * 2**(n-1)``, capped, with +-jitter."""

    base: float
    cap: float
    jitter: float

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        rng = rng or random
        wait = min(self.cap, self.base * (2 ** (retry - 1)))
        wait *= 1.0 + self.jitter * (2.0 * rng.random() - 1.0)
        if retry_after is not None:
            wait = max(wait, min(self.cap, retry_after))
        return max(0.0, wait)


@dataclass
class Outcome(Generic[T]):
    """The value of the first successful attempt, or the last failure; and how many tries."""

    attempts: int
    value: T | None = None
    failure: Failure | None = None


def with_retries(
    attempt: Callable[[int], T],
    retries: int,
    backoff: Backoff,
    stop: threading.Event | None = None,
    on_failure: Callable[[int, Failure, float | None], None] | None = None,
) -> Outcome[T]:
    """Call ``attempt(n)`` until it returns; retry only transient failures, ``retries`` times.

    ``stop`` (set on Ctrl-C) ends the waiting early; the outcome then carries the failure.
    """
    stop = stop if stop is not None else threading.Event()
    number = 0
    while True:
        number += 1
        try:
            return Outcome(attempts=number, value=attempt(number))
        except Exception as exc:  # noqa: BLE001 - every failure is classified and reported
            failure = classify(exc)
        last = not failure.transient or number > retries or stop.is_set()
        wait = 0.0 if last else backoff.delay(number, failure.retry_after)
        if on_failure is not None:
            on_failure(number, failure, None if last else wait)
        if last:
            return Outcome(attempts=number, failure=failure)
        if stop.wait(wait):
            return Outcome(attempts=number, failure=failure)
