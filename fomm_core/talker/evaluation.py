"""Evaluating a talker on test clips: synchrony, accuracy, mouth and head motion.

For each test clip the talker starts from the clip's first ground-truth keypoints (the
"source image") and generates the remaining frames from the clip's audio; the same is done
with *shuffled* audio (another test clip's speech, tiled to length; with a single clip, its
own audio rotated by half its length). Reported, averaged over clips:

* ``{gen,gt,shuffled}_sync_distance`` / ``_sync_confidence`` / ``_sync_offset_abs``: LSE-D
  and LSE-C in spirit, with the trained level-``sync_level`` syncer instead of SyncNet:
  mean embedding distance at offset 0, median minus minimum over +-``max_offset`` frames,
  and how far the best offset is from 0. Always against the clip's own audio, so the
  shuffled run measures the score of motion that follows the wrong speech.
* ``{gen,gt,shuffled}_sync_cosine``: the multi-scale sync loss's similarity (mean over
  levels of the aligned windows' cosine), higher is better.
* ``kp_l2``: mean Euclidean distance between generated and true keypoint positions
  (image units, [-1, 1] across the frame).
* ``{gen,gt}_head_velocity_std``: std over time of the frame-to-frame motion of the
  keypoints' centroid (head translation), and ``{gen,gt}_kp_velocity_std`` of every
  keypoint position: diversity of motion against the ground truth's.
* with synthetic ground truth: ``mouth_corr``, ``shuffled_mouth_corr`` and
  ``gt_mouth_corr``: Pearson correlation per clip between the true mouth opening and a
  *mouth probe* applied to generated / shuffled-audio / true keypoints.

The mouth probe: the detector's keypoints are unsupervised, so which values encode the
mouth is unknown. A ridge regression from keypoint vectors to ``gt_mouth_open`` is fitted
on the *training* clips' ground-truth keypoints, both sides centred per clip (the probe
reads how the face moves, not who it is), then applied unchanged to test sequences, which
need no labels. ``gt_mouth_corr`` is the probe's own ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import FommError
from .config import TalkerEvalConfig
from .dataset import TalkerClip, TalkerClips
from .generator import Talker
from .syncer import Syncers, lse_scores, sync_scores
from .threads import limited_threads


@dataclass
class MouthProbe:
    """Ridge regression from per-clip-centred keypoint vectors to centred mouth opening."""

    weights: np.ndarray  # (D,) applied to scaled features
    scale: np.ndarray  # (D,) feature scale

    def predict(self, keypoints: np.ndarray) -> np.ndarray:
        x = np.asarray(keypoints, dtype=np.float64)
        return ((x - x.mean(axis=0, keepdims=True)) / self.scale) @ self.weights


def fit_mouth_probe(clips: TalkerClips, alpha: float = 0.01) -> MouthProbe:
    """Fit the probe on clips with ``mouth_open`` (the training partition)."""
    usable = [c for c in clips if c.mouth_open is not None and c.num_frames > 1]
    if not usable:
        raise FommError("no clip has gt_mouth_open to fit the mouth probe on (synthetic data only)")
    x = np.concatenate([c.keypoints - c.keypoints.mean(axis=0, keepdims=True) for c in usable]).astype(np.float64)
    y = np.concatenate([c.mouth_open - c.mouth_open.mean() for c in usable]).astype(np.float64)
    scale = np.maximum(x.std(axis=0), 1e-8)
    xs = x / scale  # unit variance per value: alpha is relative to it
    n = len(xs)
    weights = np.linalg.solve(xs.T @ xs / n + alpha * np.eye(xs.shape[1]), xs.T @ y / n)
    return MouthProbe(weights=weights, scale=scale)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Correlation, or None when either side is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return None if denominator < 1e-12 else float((a * b).sum() / denominator)


def shuffled_audio(clips: list[TalkerClip], index: int, frames: int, audio_per_frame: int) -> np.ndarray:
    """Another clip's audio for ``frames`` video frames (tiled when shorter); with one clip,
    its own audio rotated by half its length."""
    if len(clips) > 1:
        other = clips[(index + 1) % len(clips)].audio[audio_per_frame:]
    else:
        own = clips[index].audio[audio_per_frame:]
        shift = (own.shape[0] // audio_per_frame // 2) * audio_per_frame
        other = np.roll(own, shift, axis=0)
    needed = frames * audio_per_frame
    reps = -(-needed // max(other.shape[0], 1))
    return np.concatenate([other] * reps)[:needed]


@torch.no_grad()
def generate_keypoints(talker: Talker, source: np.ndarray, audio: np.ndarray, frames: int,
                       chunk_frames: int) -> np.ndarray:
    """(frames, D) keypoints from one source vector and log-mels, streamed in chunks."""
    device = talker.kp_mean.device
    src = torch.from_numpy(np.asarray(source, np.float32))[None].to(device)
    au = torch.from_numpy(np.asarray(audio, np.float32))[None].to(device)
    chunks = [c[0].cpu() for c in talker.stream(au, src, frames, chunk_frames)]
    return torch.cat(chunks).numpy()


def _velocity_stds(keypoints: np.ndarray, num_kp: int) -> tuple[float, float]:
    positions = keypoints[:, : 2 * num_kp].reshape(len(keypoints), num_kp, 2)
    centroid_velocity = np.diff(positions.mean(axis=1), axis=0)
    kp_velocity = np.diff(positions, axis=0)
    return float(centroid_velocity.std(axis=0).mean()), float(kp_velocity.std(axis=0).mean())


@torch.no_grad()
def evaluate_talker(talker: Talker, syncers: Syncers, clips_test: TalkerClips, config: TalkerEvalConfig, *,
                    clips_train: TalkerClips | None = None) -> dict[str, float]:
    """Metrics over the test clips (see the module docstring); all plain floats.

    Mouth metrics need ``clips_train`` (to fit the probe) and ``gt_mouth_open`` on both.
    """
    return evaluate_talker_with_offsets(talker, syncers, clips_test, config, clips_train=clips_train)[0]


@torch.no_grad()
def evaluate_talker_with_offsets(talker: Talker, syncers: Syncers, clips_test: TalkerClips,
                                 config: TalkerEvalConfig, *, clips_train: TalkerClips | None = None
                                 ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`evaluate_talker`'s metrics and the sync-offset curve.

    The curve: ``offset`` (-max_offset..max_offset frames) and, for ``gen``, ``gt`` and
    ``shuffled``, the syncer distance at each offset averaged over the clips long enough
    for the range. A synchronised talker has its minimum at 0, like the ground truth.
    """
    with limited_threads(config.threads):
        return _evaluate(talker, syncers, clips_test, config, clips_train)


def _evaluate(talker: Talker, syncers: Syncers, clips_test: TalkerClips, config: TalkerEvalConfig,
              clips_train: TalkerClips | None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    talker.eval()
    syncers.eval()
    num_kp = talker.config.num_kp
    a = talker.config.audio_per_frame
    if config.sync_level >= syncers.config.levels:
        raise FommError(f"talker_eval.sync_level ({config.sync_level}) must be below syncer.levels "
                        f"({syncers.config.levels})")
    clips = [c for c in clips_test if c.num_frames >= 2]
    if config.max_clips:
        clips = clips[: config.max_clips]
    if not clips:
        raise FommError("no test clip with at least 2 frames to evaluate the talker on")
    probe = None
    if clips_train is not None and clips_train.has_mouth and all(c.mouth_open is not None for c in clips):
        probe = fit_mouth_probe(clips_train, config.ridge_alpha)
    per_clip: dict[str, list[float]] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None and np.isfinite(value):
            per_clip.setdefault(name, []).append(float(value))

    sync_clips = 0
    offset_sums: dict[str, np.ndarray] = {}
    for index, clip in enumerate(clips):
        frames = clip.num_frames - 1
        audio = clip.audio[a:]
        target = clip.keypoints[1:]
        sequences = {
            "gen": generate_keypoints(talker, clip.keypoints[0], audio, frames, config.chunk_frames),
            "gt": target,
            "shuffled": generate_keypoints(talker, clip.keypoints[0], shuffled_audio(clips, index, frames, a),
                                           frames, config.chunk_frames),
        }
        try:
            curves = {name: sync_scores(syncers, seq, audio, config.max_offset, config.sync_level)
                      for name, seq in sequences.items()}
            scores = {name: lse_scores(*curve) for name, curve in curves.items()}
        except ValueError:
            scores = None  # too short for the offset range: the other metrics still count
        if scores is not None:
            sync_clips += 1
            for name, (_, distances) in curves.items():
                offset_sums[name] = offset_sums.get(name, 0.0) + distances
            for name, s in scores.items():
                add(f"{name}_sync_distance", s["sync_distance"])
                add(f"{name}_sync_confidence", s["sync_confidence"])
                add(f"{name}_sync_offset_abs", abs(s["sync_offset"]))
        audio_t = torch.from_numpy(audio)[None].to(syncers.kp_mean.device)
        for name, seq in sequences.items():
            seq_t = torch.from_numpy(np.ascontiguousarray(seq))[None].to(audio_t.device)
            sims = syncers.aligned_similarity(seq_t, audio_t)
            sims = [float(s.mean()) for s in sims if s is not None]
            add(f"{name}_sync_cosine", float(np.mean(sims)) if sims else None)
        error = (sequences["gen"] - target)[:, : 2 * num_kp].reshape(frames, num_kp, 2)
        add("kp_l2", float(np.linalg.norm(error, axis=-1).mean()))
        if frames > 2:
            for name in ("gen", "gt"):
                head, every = _velocity_stds(sequences[name], num_kp)
                add(f"{name}_head_velocity_std", head)
                add(f"{name}_kp_velocity_std", every)
        if probe is not None:
            truth = clip.mouth_open[1:]
            add("mouth_corr", pearson(probe.predict(sequences["gen"]), truth))
            add("shuffled_mouth_corr", pearson(probe.predict(sequences["shuffled"]), truth))
            add("gt_mouth_corr", pearson(probe.predict(target), truth))
    if sync_clips == 0:
        shortest = 2 * config.max_offset + syncers.config.window * 2 ** config.sync_level + 1
        raise FommError(f"no test clip is long enough for sync offsets of +-{config.max_offset} frames "
                        f"(about {shortest} frames needed); lower talker_eval.max_offset")
    metrics = {name: float(np.mean(values)) for name, values in sorted(per_clip.items())}
    metrics["num_clips"] = float(len(clips))
    metrics["sync_clips"] = float(sync_clips)
    curve = {"offset": np.arange(-config.max_offset, config.max_offset + 1)}
    curve.update({name: total / sync_clips for name, total in offset_sums.items()})
    return metrics, curve
