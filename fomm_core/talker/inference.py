"""What ``fomm talk`` needs: speech features from a WAV and keypoints to render, in chunks.

Length: the video has ``ceil(samples * fps / rate)`` frames, computed exactly from the
sample count at the file's own rate, so it covers the whole speech and is at most one
frame (40 ms) longer than it (exactly as long when the duration is a whole number of
frames). The log-mels of the last, partial frame are completed by repeating the last
feature frame. Features are normalised over the whole file, as training normalises each
clip (:meth:`fomm_core.talker.dataset.TalkerClips.from_store`).

Rendering: the talker's keypoints are absolute and start from the source image's own
keypoints, so they drive the FOMM generator as they are
(``Animator(kp_detector, generator, source).generate(kp)``, no relative transfer).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np
import torch

from ..audio import FEATURE_RATE, SAMPLE_RATE, log_mel, normalise_features, resample
from ..audio_stream import wav_log_mel
from ..errors import FommError
from .dataset import audio_frames_per_video_frame
from .features import kp_to_vector, vector_to_kp
from .generator import Talker
from .threads import limited_threads


@dataclass
class SpeechFeatures:
    """``features`` (num_frames * a, n_mels) normalised log-mels for ``num_frames`` video frames."""

    features: np.ndarray
    num_frames: int
    duration_s: float
    fps: float


def video_frames_for(num_samples: int, sample_rate: int, fps: float = 25.0) -> int:
    """``ceil(num_samples * fps / sample_rate)`` in exact arithmetic."""
    ratio = Fraction(num_samples) * Fraction(fps).limit_denominator(1_000_000) / int(sample_rate)
    return int(-(-ratio.numerator // ratio.denominator))


def speech_features(samples: np.ndarray, sample_rate: int, fps: float = 25.0, audio_per_frame: int = 4,
                    where: str = "audio") -> SpeechFeatures:
    """Mono samples at any rate to talker features (resampled to 16 kHz, log-mel, normalised)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if samples.size == 0:
        raise FommError(f"{where}: no audio samples")
    mel = log_mel(resample(samples, int(sample_rate), SAMPLE_RATE), SAMPLE_RATE)
    return _features_from_mel(mel, samples.size, int(sample_rate), fps, audio_per_frame, where)


def _features_from_mel(mel: np.ndarray, num_samples: int, sample_rate: int, fps: float, audio_per_frame: int,
                       where: str) -> SpeechFeatures:
    frames = video_frames_for(num_samples, sample_rate, fps)
    a = audio_frames_per_video_frame(FEATURE_RATE, fps, audio_per_frame, where)
    if mel.shape[0] == 0:
        raise FommError(f"{where}: shorter than one 10 ms feature frame")
    mel = normalise_features(mel)
    needed = frames * a
    if mel.shape[0] < needed:
        mel = np.concatenate([mel, np.repeat(mel[-1:], needed - mel.shape[0], axis=0)])
    return SpeechFeatures(features=np.ascontiguousarray(mel[:needed]), num_frames=frames,
                          duration_s=num_samples / float(sample_rate), fps=float(fps))


def audio_features_from_wav(path: str | os.PathLike, fps: float = 25.0, audio_per_frame: int = 4) -> SpeechFeatures:
    """:func:`speech_features` of a WAV file (any rate, channels mixed down), in bounded memory.

    The file is read, resampled and framed in blocks (:mod:`fomm_core.audio_stream`); only
    the features are held, so an hour of speech costs no more than a few seconds beyond them.
    """
    mel, num_samples, rate = wav_log_mel(path, SAMPLE_RATE)
    return _features_from_mel(mel, num_samples, rate, fps, audio_per_frame, str(path))


def source_vector(kp: dict) -> torch.Tensor:
    """A detector output ``{"value": (1, K, 2), "jacobian": (1, K, 2, 2)}`` to (1, K * 6)."""
    value = kp["value"]
    if value.dim() == 2:
        kp = {"value": value[None], "jacobian": kp["jacobian"][None]}
    return kp_to_vector({"value": kp["value"].float(), "jacobian": kp["jacobian"].float()})


@torch.inference_mode()
def talk_keypoints(talker: Talker, source_kp: dict, speech: SpeechFeatures | np.ndarray, *,
                   num_frames: int | None = None, chunk_frames: int = 100, threads: int = 1
                   ) -> Iterator[dict[str, torch.Tensor]]:
    """Keypoint dicts ``{"value": (n, K, 2), "jacobian": (n, K, 2, 2)}`` for the FOMM generator.

    ``source_kp`` is the keypoint detector's output for the source image (batch 1). Frames
    come in chunks of about ``chunk_frames`` on the talker's device; memory stays flat
    however long the speech. Each chunk is computed on at most ``threads`` torch threads
    (:mod:`fomm_core.talker.threads`); the caller's setting is back while it renders.
    """
    if isinstance(speech, SpeechFeatures):
        features, frames = speech.features, speech.num_frames
    else:
        features, frames = np.asarray(speech, np.float32), None
    frames = num_frames or frames or features.shape[0] // talker.config.audio_per_frame
    device = talker.kp_mean.device
    source = source_vector(source_kp).to(device)
    if source.shape[-1] != talker.config.kp_dim:
        raise FommError(f"the source has {source.shape[-1] // 6} keypoints but the talker was trained with "
                        f"{talker.config.num_kp}; use the keypoint detector the talker was trained on")
    audio = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None].to(device)
    talker.eval()
    chunks = talker.stream(audio, source, frames, chunk_frames)
    while True:
        with limited_threads(threads):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield {k: v.contiguous() for k, v in vector_to_kp(chunk[0]).items()}
