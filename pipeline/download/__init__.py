"""The download stage's machinery: yt-dlp as a library, with its own retries and report.

One module per job: ``config`` (settings), ``jobs`` (clips table -> one job per video),
``ytdlp_options`` (yt-dlp params for a job), ``errors`` (failure -> reason code),
``retry`` (backoff loop), ``worker`` (one video, atomically), ``archive``, ``report`` and
``runner`` (threads, progress, resume).
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
