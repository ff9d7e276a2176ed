"""The tubes stage: face tubes from downloaded videos, in the clips-table contract crop reads.

Modules: ``config`` (the ``tubes`` section), ``references`` (VoxCeleb txt tracks per
video), ``frames`` (decoding every stride-th frame with ffmpeg), ``video`` (one video's
tubes: the worker), ``run`` (jobs, the process pool, resumable per-video parts, the tables).
"""
