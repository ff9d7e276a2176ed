"""Which clips go to which shard, and the keys that say whether finished work is still valid.

The plan depends only on the manifest (sorted clips, crop's frame counts) and
``frames_per_shard``: never on timing, worker count or ``--part``, so every machine computes
the same plan and the output is the same bytes however it was produced.

A clip's key hashes everything its spill and features are made from (the manifest row, the
sizes of its mp4/wav/ground truth, the encoding settings and the shard code itself); a shard's
key hashes its clips' keys. Finished shards and spills whose key still matches are kept on a
re-run; anything else is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import fomm_core.audio
import fomm_core.shard_file
from fomm_core.errors import FommError

from . import clip as _clip_module
from . import encode as _encode_module
from . import features as _features_module
from . import frames as _frames_module
from .config import ShardConfig
from .manifest import ClipRow, Manifest

SHARDS_SUBDIR = "shards"
SPILL_SUBDIR = ".spill"


def shard_name(number: int) -> str:
    return f"{SHARDS_SUBDIR}/shard-{number:05d}{fomm_core.shard_file.SUFFIX}"


@dataclass(frozen=True)
class Part:
    """``--part K/N``: this run does shards ``K-1, K-1+N, K-1+2N, ...`` (K counts from 1)."""

    k: int
    n: int

    @classmethod
    def parse(cls, text: str) -> "Part":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if match is None:
            raise FommError(f"--part {text!r}: expected K/N, e.g. 3/8 (part 3 of 8, K from 1 to N)")
        k, n = int(match.group(1)), int(match.group(2))
        if not 1 <= k <= n:
            raise FommError(f"--part {text}: K must be between 1 and N={n}")
        return cls(k, n)

    def owns(self, shard: int) -> bool:
        return shard % self.n == self.k - 1

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


@dataclass(frozen=True)
class Job:
    """Shard ``number``: manifest clips ``first .. first+count-1`` (sorted order)."""

    number: int
    first: int
    count: int

    @property
    def name(self) -> str:
        return shard_name(self.number)


def plan_jobs(frame_counts: np.ndarray, frames_per_shard: int) -> list[Job]:
    """Consecutive clips per shard; a shard closes before the clip that would pass the limit."""
    jobs: list[Job] = []
    first, frames = 0, 0
    for k, n in enumerate(frame_counts.tolist()):
        if k > first and frames + n > frames_per_shard:
            jobs.append(Job(len(jobs), first, k - first))
            first, frames = k, 0
        frames += n
    if len(frame_counts) > first:
        jobs.append(Job(len(jobs), first, len(frame_counts) - first))
    return jobs


def code_version() -> str:
    """Hash of the modules that decide shard and feature bytes (a code change redoes the work)."""
    digest = hashlib.sha256()
    for module in (fomm_core.audio, fomm_core.shard_file, _clip_module, _encode_module, _features_module,
                   _frames_module):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _size(path: Path | None) -> int | None:
    return None if path is None else os.stat(path).st_size


def clip_key(clip: ClipRow, clips_dir: Path, groundtruth: Path | None, config: ShardConfig, code: str) -> str:
    """What a clip's spill and features are a function of, hashed."""
    row = asdict(clip)
    row.pop("manifest_row")
    row["video"] = str(clip.video.relative_to(clips_dir))
    row["audio"] = str(clip.audio.relative_to(clips_dir)) if clip.audio is not None else None
    gt = groundtruth / f"{clip.video_id}.npz" if groundtruth is not None else None
    facts = {
        "row": row, "video_bytes": _size(clip.video), "audio_bytes": _size(clip.audio),
        "groundtruth_bytes": _size(gt) if gt is not None and gt.is_file() else None,
        "groundtruth": groundtruth is not None, "encoding": config.encoding(), "code": code,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def shard_key(clip_keys: list[str]) -> str:
    return hashlib.sha256("\n".join(clip_keys).encode()).hexdigest()


def job_clips(manifest: Manifest, job: Job) -> list[ClipRow]:
    return manifest.rows(job.first, job.count)
