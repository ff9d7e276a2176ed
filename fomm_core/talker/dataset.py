"""Clips for the talker: keypoint vectors joined with their audio features, frame-aligned.

Audio features are 100 Hz log-mels, video 25 fps; how many feature frames belong to one
video frame is computed from the two rates (never assumed) and must be a whole number
equal to the models' ``audio_per_frame``. Video frame ``t`` owns feature frames
``[t * a, (t + 1) * a)``; a clip is trimmed to the frames that have both keypoints and all
their audio. Everything is held in memory: the keypoints and log-mels of a clip are a few
hundred kilobytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import normalise_features
from ..errors import FommError
from .features import keypoints_path, kp_to_vector, load_clip_keypoints


@dataclass
class TalkerClip:
    """One clip: ``keypoints`` (F, D) vectors, ``audio`` (F * a, n_mels) normalised log-mels."""

    clip_id: str
    person_id: str
    keypoints: np.ndarray
    audio: np.ndarray
    mouth_open: np.ndarray | None = None  # (F,) synthetic ground truth, 0..1

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])


@dataclass
class KeypointStats:
    """Per-dimension statistics of the training keypoints, used to normalise model inputs.

    ``mean``/``std`` over all frames (identity included), ``motion_std`` of the deviation
    from each clip's mean (how much a face moves) and ``velocity_std`` of frame-to-frame
    differences. All (D,) float32, floored so constant dimensions do not divide by zero.
    """

    mean: np.ndarray
    std: np.ndarray
    motion_std: np.ndarray
    velocity_std: np.ndarray

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in vars(self).items()}


def audio_frames_per_video_frame(feature_rate: float, fps: float, expected: int, where: str = "clip") -> int:
    """``feature_rate / fps`` as an integer, checked against what the models were built for."""
    if not fps > 0 or not feature_rate > 0:
        raise FommError(f"{where}: bad rates (features {feature_rate} Hz, video {fps} fps)")
    ratio = feature_rate / fps
    if abs(ratio - round(ratio)) > 1e-3 or round(ratio) != expected:
        raise FommError(
            f"{where}: {feature_rate:g} Hz audio features over {fps:g} fps video is {ratio:.3f} feature frames per "
            f"video frame; the talker needs exactly {expected} (25 fps video with 100 Hz log-mels): "
            "re-encode at 25 fps")
    return int(round(ratio))


def align_audio_to_video(num_video_frames: int, audio: np.ndarray, audio_per_frame: int) -> tuple[int, np.ndarray]:
    """``(F, audio[:F * a])`` with ``F`` the video frames whose audio is complete.

    E.g. 25 video frames with 101 feature frames at a = 4 give (25, 100 frames); with 99
    feature frames the last video frame lacks audio and F = 24.
    """
    frames = min(int(num_video_frames), int(audio.shape[0]) // audio_per_frame)
    return frames, audio[: frames * audio_per_frame]


def compute_stats(clips: list[TalkerClip], floor: float = 1e-4) -> KeypointStats:
    """Statistics of the given clips' keypoints (see :class:`KeypointStats`)."""
    if not clips:
        raise FommError("no clips to compute keypoint statistics from")
    allk = np.concatenate([c.keypoints for c in clips]).astype(np.float64)
    centred = np.concatenate([c.keypoints - c.keypoints.mean(axis=0, keepdims=True) for c in clips]).astype(np.float64)
    vel = [np.diff(c.keypoints, axis=0) for c in clips if c.num_frames > 1]
    vel_std = np.concatenate(vel).astype(np.float64).std(axis=0) if vel else np.zeros(allk.shape[1])
    return KeypointStats(
        mean=allk.mean(axis=0).astype(np.float32),
        std=np.maximum(allk.std(axis=0), floor).astype(np.float32),
        motion_std=np.maximum(centred.std(axis=0), floor).astype(np.float32),
        velocity_std=np.maximum(vel_std, floor).astype(np.float32),
    )


class TalkerClips:
    """A partition's clips for the talker, with seeded window sampling for training."""

    def __init__(self, clips: list[TalkerClip], audio_per_frame: int = 4):
        if not clips:
            raise FommError("no talker clips: the partition is empty or every clip is too short")
        dims = {c.keypoints.shape[1] for c in clips}
        mels = {c.audio.shape[1] for c in clips}
        if len(dims) != 1 or len(mels) != 1:
            raise FommError(f"clips disagree on keypoint dims {sorted(dims)} or mel bands {sorted(mels)}")
        for c in clips:
            if c.audio.shape[0] != c.num_frames * audio_per_frame:
                raise ValueError(f"{c.clip_id}: {c.audio.shape[0]} audio frames for {c.num_frames} video frames "
                                 f"(expected {audio_per_frame} per frame); align with align_audio_to_video")
        self.clips = list(clips)
        self.skipped: list[tuple[str, str]] = []  # (clip_id, why) left out by from_store
        self.fomm_sha256 = ""  # the FOMM weights the keypoints come from (from_store), "" = unknown
        self.audio_per_frame = audio_per_frame
        self.kp_dim = dims.pop()
        self.n_mels = mels.pop()

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        return iter(self.clips)

    @property
    def has_mouth(self) -> bool:
        return all(c.mouth_open is not None for c in self.clips)

    @classmethod
    def from_store(cls, store, keypoints_dir: str | os.PathLike, partition: str, audio_per_frame: int = 4,
                   min_frames: int = 2) -> "TalkerClips":
        """Join a :class:`~fomm_core.data.shards.ShardStore` partition with its keypoint files.

        The log-mels are normalised per clip here (mean removed, peak 1), exactly as
        :func:`fomm_core.talker.inference.audio_features_from_wav` does at inference.
        Clips without audio, or shorter than ``min_frames`` after alignment, are left out
        and listed in ``skipped``; keypoints that do not match their clip, or that another
        FOMM checkpoint detected than the partition's first clip, are an error.
        """
        out, skipped = [], []
        fomm_sha256, first_clip = None, None
        for entry in store.select(partition):
            kp = load_clip_keypoints(keypoints_path(keypoints_dir, partition, entry.clip_id))
            where = f"clip {entry.clip_id}"
            if abs(kp["fps"] - entry.fps) > 1e-3:
                raise FommError(f"{where}: keypoints at {kp['fps']:g} fps but the clip is {entry.fps:g} fps; "
                                "rerun the keypoint stage")
            if kp["value"].shape[0] != entry.num_frames:
                raise FommError(f"{where}: {kp['value'].shape[0]} keypoint frames for {entry.num_frames} video "
                                "frames; rerun the keypoint stage")
            if fomm_sha256 is None:
                fomm_sha256, first_clip = kp["fomm_sha256"], entry.clip_id
            elif kp["fomm_sha256"] != fomm_sha256:
                raise FommError(f"{where}: keypoints from FOMM weights {kp['fomm_sha256'][:12] or 'unrecorded'} but "
                                f"clip {first_clip}'s from {fomm_sha256[:12] or 'unrecorded'}; the keypoint folder "
                                "mixes two FOMM checkpoints: rerun `fomm extract-keypoints`")
            features = store.load_features(entry)
            if "logmel" not in features or features["logmel"].shape[0] == 0:
                skipped.append((entry.clip_id, "no audio"))
                continue
            a = audio_frames_per_video_frame(float(features["logmel_rate"]), entry.fps, audio_per_frame, where)
            frames, logmel = align_audio_to_video(entry.num_frames, features["logmel"], a)
            if frames < min_frames:
                skipped.append((entry.clip_id, f"{frames} frames with audio, fewer than {min_frames}"))
                continue
            mouth = features.get("gt_mouth_open")
            out.append(TalkerClip(
                clip_id=entry.clip_id, person_id=entry.person_id,
                keypoints=np.asarray(kp_to_vector(kp), dtype=np.float32)[:frames],
                audio=normalise_features(logmel),
                mouth_open=None if mouth is None else np.asarray(mouth, dtype=np.float32)[:frames],
            ))
        if not out:
            raise FommError(f"{Path(store.root)}: no clips with audio and at least {min_frames} frames in "
                            f"partition {partition!r}")
        clips = cls(out, audio_per_frame)
        clips.skipped = skipped
        clips.fomm_sha256 = fomm_sha256 or ""
        return clips

    def stats(self) -> KeypointStats:
        return compute_stats(self.clips)

    def long_enough(self, frames: int) -> list[TalkerClip]:
        return [c for c in self.clips if c.num_frames >= frames]

    def sample_windows(self, batch: int, frames: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``batch`` random windows for training the talker.

        Returns ``source`` (B, D), the keypoints of the frame just before the window (the
        talker starts from it, as from the source image at inference), ``keypoints``
        (B, frames, D), and ``audio`` (B, frames * a, n_mels) of the window's frames.
        """
        pool = self.long_enough(frames + 1)
        if not pool:
            longest = max(c.num_frames for c in self.clips)
            raise FommError(f"no clip has {frames + 1} frames for training windows (longest: {longest}); "
                            "lower talker_train.sequence_frames")
        a = self.audio_per_frame
        src, kps, auds = [], [], []
        for _ in range(batch):
            clip = pool[int(rng.integers(len(pool)))]
            start = int(rng.integers(1, clip.num_frames - frames + 1))
            src.append(clip.keypoints[start - 1])
            kps.append(clip.keypoints[start:start + frames])
            auds.append(clip.audio[start * a:(start + frames) * a])
        return {"source": torch.from_numpy(np.stack(src)), "keypoints": torch.from_numpy(np.stack(kps)),
                "audio": torch.from_numpy(np.stack(auds))}
