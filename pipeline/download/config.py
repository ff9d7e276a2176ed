"""Settings of the download stage (the ``download`` section of params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.cores import worker_count


@dataclass(frozen=True)
class DownloadConfig:
    """Where to read and write, what to fetch, and how politely and persistently.

    ``mode``: ``whole`` fetches each video once; ``sections`` fetches only the clip time
    ranges (one file per clip, re-encoded at the cuts so they are frame accurate).
    ``retries`` counts retries after the first attempt, for transient failures only;
    the wait before retry ``n`` (1-based) is ``backoff_base * 2**(n-1)`` seconds capped at
    ``backoff_max``, times a random factor in ``[1 - jitter, 1 + jitter]``; a server's
    ``Retry-After`` is honoured up to ``backoff_max``.
    ``workers``: videos fetched at once, 0 = one per core (sections mode re-encodes the
    cuts, so it can use the cores; whole mode is network bound).
    ``retry_failed``: a video whose last failure was permanent (404, private, ...) at the
    same URL is not requested again unless this is true; transient failures always are.
    """

    clips: str = "artifacts/metadata/clips.parquet"
    out: str = "artifacts/videos"
    mode: Literal["whole", "sections"] = "whole"
    max_height: int = 720
    workers: int = 4
    retry_failed: bool = False
    retries: int = 5
    backoff_base: float = 2.0
    backoff_max: float = 60.0
    jitter: float = 0.25
    min_success_fraction: float = 0.5
    force_keyframes_at_cuts: bool = True
    cookies: str = ""
    sleep_interval: float = 0.0
    max_sleep_interval: float = 0.0
    ratelimit: int = 0
    socket_timeout: float = 30.0
    ytdlp_retries: int = 3
    allow_file_urls: bool = False

    def validate(self) -> None:
        if self.max_height < 1:
            raise ValueError(f"max_height must be at least 1, got {self.max_height}")
        if not 0 <= self.workers <= 256:
            raise ValueError(f"workers must be between 0 (one per core) and 256, got {self.workers}")
        if self.retries < 0 or self.ytdlp_retries < 0:
            raise ValueError("retries and ytdlp_retries must be 0 or more")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must be 0 or more")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")
        if not 0.0 <= self.min_success_fraction <= 1.0:
            raise ValueError(f"min_success_fraction must be between 0 and 1, got {self.min_success_fraction}")
        if self.sleep_interval < 0 or self.max_sleep_interval < 0:
            raise ValueError("sleep_interval and max_sleep_interval must be 0 or more")
        if self.max_sleep_interval and self.max_sleep_interval < self.sleep_interval:
            raise ValueError("max_sleep_interval must be 0 (off) or at least sleep_interval")
        if self.ratelimit < 0:
            raise ValueError(f"ratelimit must be 0 (unlimited) or bytes per second, got {self.ratelimit}")
        if self.socket_timeout <= 0:
            raise ValueError(f"socket_timeout must be positive, got {self.socket_timeout}")

    def worker_count(self) -> int:
        return worker_count(self.workers)
