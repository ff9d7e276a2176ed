"""Which videos exist, who is in them and where their clips lie: the dataset layout.

Everything here is a pure function of the config, so the CSV rows, ids and per-video
random streams are identical for the same seed whatever order videos are rendered in.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import numpy as np

from pipeline.ids import is_person_id, is_video_id

from .config import FPS, SynthConfig

PERSON_BASE = 90000


@dataclass(frozen=True)
class ClipSpan:
    start: int  # first frame of the utterance
    end: int  # exclusive


@dataclass(frozen=True)
class VideoPlan:
    index: int  # global video index
    identity: int
    person_id: str
    video_id: str
    partition: str
    num_frames: int
    clips: tuple[ClipSpan, ...]
    seed: int  # the seed itself, kept so a plan can be rebuilt in a worker process


def person_id_for(identity: int) -> str:
    person = f"id{PERSON_BASE + identity:05d}"
    assert is_person_id(person), person
    return person


def video_id_for(seed: int, index: int) -> str:
    """``syn`` + 8 url-safe base64 characters of a hash of (seed, index)."""
    digest = hashlib.sha256(f"fomm-synth:{seed}:{index}".encode()).digest()
    video_id = "syn" + base64.urlsafe_b64encode(digest).decode("ascii")[:8]
    assert is_video_id(video_id), video_id
    return video_id


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream for one (identity / video / purpose) key path."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, *keys]))


IDENTITY_STREAM = 1
VIDEO_STREAM = 2
LAYOUT_STREAM = 3


def seconds_to_frames(seconds: float) -> int:
    return int(round(seconds * FPS))


def plan_videos(cfg: SynthConfig) -> list[VideoPlan]:
    """All videos of the set, in index order (identity-major)."""
    plans: list[VideoPlan] = []
    seen: set[str] = set()
    first_test = cfg.identities - cfg.test_identities
    for identity in range(cfg.identities):
        for v in range(cfg.videos_per_identity):
            index = identity * cfg.videos_per_identity + v
            rng = rng_for(cfg.seed, LAYOUT_STREAM, index)
            frame = seconds_to_frames(cfg.lead_seconds)
            clips = []
            for c in range(cfg.clips_per_video):
                if c:
                    frame += seconds_to_frames(cfg.gap_seconds * rng.uniform(0.6, 1.4))
                length = seconds_to_frames(rng.uniform(cfg.min_clip_seconds, cfg.max_clip_seconds))
                clips.append(ClipSpan(frame, frame + length))
                frame += length
            num_frames = frame + seconds_to_frames(cfg.lead_seconds)
            video_id = video_id_for(cfg.seed, index)
            salt = 0
            while video_id in seen:  # a hash collision is astronomically rare, but stay unique
                salt += 1
                video_id = video_id_for(cfg.seed, index + salt * 1_000_003)
            seen.add(video_id)
            plans.append(
                VideoPlan(
                    index=index,
                    identity=identity,
                    person_id=person_id_for(identity),
                    video_id=video_id,
                    partition="test" if identity >= first_test else "train",
                    num_frames=num_frames,
                    clips=tuple(clips),
                    seed=cfg.seed,
                )
            )
    return plans
