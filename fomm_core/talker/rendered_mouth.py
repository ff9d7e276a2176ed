"""Does the *rendered* mouth move with the speech? Landmark mouth opening vs speech envelope.

The other talker metrics judge keypoints; this one judges pixels, and works for real
speech without any ground truth: the talker's keypoints are rendered by the FOMM
generator from the clip's first frame, dlib's 68 landmarks give the inner-lip gap per frame
(:func:`fomm_core.faces.distances.mouth_opening`), and its Pearson correlation with the
speech envelope (the clip's log-mel energy per video frame) is reported. The same number
on the real video is the reference a good talker approaches; shuffled audio (another
clip's speech) is the floor. Frames without a detected face are left out (the face rate
says how many).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..faces import FaceBackend
from ..faces.distances import describe, mouth_opening
from ..inference.animate import Animator, to_uint8_frames
from .features import vector_to_kp

MIN_FRAMES = 5  # fewer frames with a face than this: no correlation for the clip


def speech_envelope(logmels: np.ndarray, audio_per_frame: int) -> np.ndarray:
    """(F * a, n_mels) log-mels -> (F,) mean log-mel energy per video frame."""
    frames = logmels.shape[0] // audio_per_frame
    return logmels[: frames * audio_per_frame].reshape(frames, audio_per_frame, -1).mean(axis=(1, 2))


def mouth_track(backend: FaceBackend, frames: Sequence[np.ndarray]) -> np.ndarray:
    """(F,) mouth opening per uint8 RGB frame, NaN where no face is found."""
    out = np.full(len(frames), np.nan)
    for k, face in enumerate(describe(backend, frames, descriptors=False)):
        if len(face):
            out[k] = float(mouth_opening(face.landmarks[0]))
    return out


def envelope_correlation(mouth: np.ndarray, envelope: np.ndarray) -> float | None:
    """Pearson correlation over frames with a face; None when too few or either is constant."""
    n = min(len(mouth), len(envelope))
    mouth, envelope = mouth[:n], envelope[:n]
    keep = np.isfinite(mouth)
    if keep.sum() < MIN_FRAMES or np.std(mouth[keep]) == 0 or np.std(envelope[keep]) == 0:
        return None
    return float(np.corrcoef(mouth[keep], envelope[keep])[0, 1])


@torch.no_grad()
def render_keypoints(kp_detector, generator, source: torch.Tensor, sequence: np.ndarray,
                     batch_size: int = 16) -> list[np.ndarray]:
    """uint8 RGB frames of ``source`` (1, 3, H, W) moved to the absolute keypoint vectors (F, D)."""
    animator = Animator(kp_detector, generator, source, relative=False, fold=False)
    frames: list[np.ndarray] = []
    for start in range(0, len(sequence), batch_size):
        kp = {k: torch.from_numpy(np.ascontiguousarray(v)).to(source.device)
              for k, v in vector_to_kp(sequence[start:start + batch_size]).items()}
        frames.extend(to_uint8_frames(animator.generate(kp)))
    return frames


def rendered_mouth_metrics(talker, kp_detector, generator, frames_of, clips, backend: FaceBackend, *,
                           chunk_frames: int = 100, max_clips: int = 0) -> dict[str, float]:
    """Mean per-clip mouth/envelope correlations of the rendered talker, shuffled audio and the
    real video, and the fraction of rendered frames with a face.

    ``frames_of(clip_id)`` gives the clip's real frames as a float (F, 3, H, W) tensor (the
    first one is the source, as in ``fomm talk``); ``clips`` the test ``TalkerClips``.
    """
    from .evaluation import generate_keypoints, shuffled_audio

    a = talker.config.audio_per_frame
    usable = [c for c in clips if c.num_frames > MIN_FRAMES]
    if max_clips:
        usable = usable[:max_clips]
    scores: dict[str, list[float]] = {"rendered": [], "shuffled": [], "real": []}
    faces = total = 0
    talker.eval()
    for index, clip in enumerate(usable):
        real = frames_of(clip.clip_id)
        frames = min(len(real), clip.num_frames) - 1
        speech = clip.audio[a:(frames + 1) * a]
        envelope = speech_envelope(speech, a)
        sequences = {
            "rendered": generate_keypoints(talker, clip.keypoints[0], speech, frames, chunk_frames),
            "shuffled": generate_keypoints(talker, clip.keypoints[0], shuffled_audio(usable, index, frames, a),
                                           frames, chunk_frames),
        }
        for name, sequence in sequences.items():
            mouth = mouth_track(backend, render_keypoints(kp_detector, generator, real[:1], sequence))
            if name == "rendered":
                faces += int(np.isfinite(mouth).sum())
                total += len(mouth)
            value = envelope_correlation(mouth, envelope)
            if value is not None:
                scores[name].append(value)
        value = envelope_correlation(mouth_track(backend, list(to_uint8_frames(real[1:frames + 1]))), envelope)
        if value is not None:
            scores["real"].append(value)
    metrics = {f"{name}_mouth_envelope_corr": float(np.mean(v)) if v else None for name, v in scores.items()}
    metrics["rendered_face_rate"] = faces / total if total else None
    return metrics
