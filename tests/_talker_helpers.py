"""Synthetic speech/keypoint clips and tiny configs for the talker tests.

A clip's "speech" is a train of syllable bursts (a loudness envelope at 100 Hz, 2 to 6
video frames long, with pauses); its log-mel-like features are the envelope times a random
spectral shape plus noise. The mouth opening is the envelope averaged over each video
frame's four feature frames (as the synthetic renderer does), and it moves two keypoints
(a lip position and a Jacobian entry) on top of a slowly wandering head and noise.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fomm_core.audio import normalise_features
from fomm_core.data.shards import ClipEntry, ShardStore
from fomm_core.talker import SyncerConfig, TalkerClip, TalkerClips, TalkerModelConfig, TalkerTrainConfig
from fomm_core.talker.threads import limited_threads

NUM_KP = 10
N_MELS = 26
A = 4  # audio frames per video frame
MOUTH_KP = 6  # the keypoint whose y position follows the mouth


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny sequential ops on a shared machine: one torch thread (see fomm_core.talker.threads)."""
    with limited_threads(1):
        yield


def envelope(rng: np.random.Generator, frames: int) -> np.ndarray:
    """(frames * A,) loudness in 0..1: syllables with attack/decay, separated by pauses."""
    env = np.zeros(frames * A)
    t = int(rng.integers(0, 2 * A))
    while t < env.size:
        length = int(rng.integers(2 * A, 6 * A))
        shape = np.sin(np.linspace(0, np.pi, length)) * rng.uniform(0.5, 1.0)
        env[t:t + length] = shape[: env.size - t]
        t += length + int(rng.integers(A, 5 * A))
    return env


def synthetic_clip(rng: np.random.Generator, frames: int, clip_id: str = "clip", person: str = "id00000",
                   noise: float = 0.003) -> TalkerClip:
    env = envelope(rng, frames)
    spectrum = rng.uniform(0.5, 1.5, N_MELS)
    audio = np.log(1e-3 + env[:, None] * spectrum[None]) + rng.normal(0, 0.1, (frames * A, N_MELS))
    mouth = env.reshape(frames, A).mean(axis=1)
    base = rng.uniform(-0.6, 0.6, (NUM_KP, 2))
    head = np.cumsum(rng.normal(0, 0.004, (frames, 1, 2)), axis=0)
    value = base[None] + head + rng.normal(0, noise, (frames, NUM_KP, 2))
    value[:, MOUTH_KP, 1] += 0.15 * mouth
    jacobian = np.tile(np.eye(2), (frames, NUM_KP, 1, 1)) + rng.normal(0, noise, (frames, NUM_KP, 2, 2))
    jacobian[:, MOUTH_KP, 1, 1] += 0.4 * mouth
    keypoints = np.concatenate([value.reshape(frames, -1), jacobian.reshape(frames, -1)], axis=1)
    return TalkerClip(clip_id=clip_id, person_id=person, keypoints=keypoints.astype(np.float32),
                      audio=normalise_features(audio.astype(np.float32)), mouth_open=mouth.astype(np.float32))


def synthetic_clips(count: int, frames: int, seed: int = 0) -> TalkerClips:
    rng = np.random.default_rng(seed)
    return TalkerClips([synthetic_clip(rng, frames, f"clip{i:03d}", f"id{i % 4:05d}") for i in range(count)], A)


def delay_audio(audio: np.ndarray, frames: int) -> np.ndarray:
    """The audio heard ``frames`` video frames later (negative: earlier), edge-padded."""
    shift = frames * A
    if shift >= 0:
        return np.concatenate([np.repeat(audio[:1], shift, axis=0), audio[: len(audio) - shift]])
    return np.concatenate([audio[-shift:], np.repeat(audio[-1:], -shift, axis=0)])


def tiny_model(levels: int = 2, **overrides) -> TalkerModelConfig:
    settings = dict(levels=levels, audio_channels=16, dim=32, layers=2, heads=2, context=8, branch_hidden=32)
    settings.update(overrides)
    return TalkerModelConfig(**settings)


def tiny_syncer(levels: int = 2, **overrides) -> SyncerConfig:
    settings = dict(levels=levels, hidden=32, embed_dim=16, candidates=8, steps=10, batch_size=8, log_every=5)
    settings.update(overrides)
    return SyncerConfig(**settings)


def tiny_train(**overrides) -> TalkerTrainConfig:
    settings = dict(steps=6, teacher_forcing_steps=3, batch_size=4, sequence_frames=12, disc_windows=[5, 10],
                    disc_hidden=16, log_every=3)
    settings.update(overrides)
    return TalkerTrainConfig(**settings)


def fake_shard_store(root, clips, fps=25.0):
    """A ShardStore index whose clips have features NPZs (no frames needed by the talker join).

    ``clips``: (clip_id, partition, frames, logmel (T, 26)) tuples.
    """
    rows = []
    for clip_id, partition, frames, logmel in clips:
        rel = f"features/{partition}/{clip_id}.npz"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez(root / rel, logmel=logmel, logmel_rate=np.float32(100.0),
                 gt_mouth_open=np.linspace(0, 1, frames, dtype=np.float32))
        rows.append(ClipEntry(clip_id=clip_id, person_id=clip_id.split("#")[0], video_id="vidAAAAAAAA",
                              partition=partition, shard="shards/shard-00000.parquet", row_start=0, row_end=frames,
                              num_frames=frames, fps=fps, image_format="png", height=8, width=8, features=rel,
                              has_groundtruth=True))
    table = pa.Table.from_pylist([vars(r) for r in rows])
    pq.write_table(table, root / "index.parquet")
    return ShardStore(root)
