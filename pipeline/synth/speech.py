"""A speech-like audio track and the mouth opening that follows it.

Each utterance is a run of words of 1-3 syllables with pauses between words. A syllable is
a glottal-pulse-like harmonic series on a gliding pitch, shaped by vowel formants and an
attack/decay envelope, sometimes led by a short consonant noise burst. The mouth opening
of video frame k is the RMS amplitude of the speech in exactly that frame's samples
[k*882, (k+1)*882), normalised so the loudest frame is 1: sound and mouth cannot drift.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .config import SAMPLE_RATE, SAMPLES_PER_FRAME
from .identity import FaceStyle
from .plan import ClipSpan

# (F1, F2, F3) Hz of a few vowels for an adult male tract; scaled per voice
VOWELS = np.array(
    [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240),
     (530, 1840, 2480), (570, 840, 2410), (660, 1720, 2410)],
    dtype=np.float64,
)
BANDWIDTHS = np.array([90.0, 110.0, 170.0])
FORMANT_WEIGHTS = np.array([1.0, 0.7, 0.35])
PEAK = 0.7  # loudest sample of a video's speech
NOISE_FLOOR = 3e-4  # standard deviation of the background hiss (about -70 dBFS)
MAX_HARMONIC_HZ = 5000.0


def syllable(
    rng: np.random.Generator, style: FaceStyle, seconds: float, f_start: float, f_end: float
) -> np.ndarray:
    """One voiced syllable (float64, peak = 1 before the caller's loudness)."""
    n = max(8, int(seconds * SAMPLE_RATE))
    tt = np.arange(n) / SAMPLE_RATE
    f0 = np.linspace(f_start, f_end, n)
    # add a little vibrato-like wobble so harmonics are not perfectly static
    f0 = f0 * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * tt))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    formants = VOWELS[rng.integers(len(VOWELS))] * style.formant_shift * rng.uniform(0.95, 1.05, 3)
    harmonics = np.arange(1, int(MAX_HARMONIC_HZ / max(f_start, f_end)) + 1)
    freqs = harmonics * float(np.mean(f0))
    detune = (freqs[:, None] - formants[None, :]) / BANDWIDTHS[None, :]
    gains = (FORMANT_WEIGHTS[None, :] / (1 + detune**2)).sum(1)  # resonance peaks at the formants
    gains = (gains + 0.03) / harmonics**0.5  # glottal spectral tilt
    wave = np.sin(np.outer(phase, harmonics)) @ gains
    wave /= max(float(np.abs(wave).max()), 1e-9)
    attack = min(n, max(2, int(rng.uniform(0.012, 0.035) * SAMPLE_RATE)))
    release = min(n - attack, max(2, int(rng.uniform(0.03, 0.07) * SAMPLE_RATE)))
    env = np.ones(n) * (1 - 0.3 * tt / seconds)
    env[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    env[n - release :] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / release)
    out = wave * env
    if rng.random() < 0.5:  # consonant onset: a short burst of high-passed noise
        burst = min(n, int(rng.uniform(0.012, 0.035) * SAMPLE_RATE))
        noise = np.diff(rng.normal(0, 1, burst + 1))
        out[:burst] += 0.25 * noise * np.linspace(1, 0, burst)
    return out


def speech_track(
    rng: np.random.Generator, style: FaceStyle, num_frames: int, clips: Sequence[ClipSpan]
) -> tuple[np.ndarray, np.ndarray]:
    """``(audio, mouth_open)``: float32 samples (N*882, peak 0.7 plus hiss) and (N,) in 0..1."""
    speech = np.zeros(num_frames * SAMPLES_PER_FRAME, dtype=np.float64)
    for clip in clips:
        onset = clip.start + int(rng.integers(1, 3))
        cursor = onset * SAMPLES_PER_FRAME + int(rng.integers(SAMPLES_PER_FRAME))
        stop = (clip.end - int(rng.integers(1, 3))) * SAMPLES_PER_FRAME
        total = max(stop - cursor, 1)
        done = False
        while not done:
            for _ in range(int(rng.integers(1, 4))):  # syllables in this word
                seconds = rng.uniform(0.08, 0.22)
                n = int(seconds * SAMPLE_RATE)
                if cursor + n > stop:
                    done = True
                    break
                progress = (cursor - stop + total) / total
                base = style.f0 * (1.12 - 0.22 * progress)  # declination over the utterance
                f_start = base * (1 + rng.uniform(-0.1, 0.15))
                f_end = base * (1 + rng.uniform(-0.15, 0.1))
                loudness = rng.uniform(0.55, 1.0)
                speech[cursor : cursor + n] += loudness * syllable(rng, style, seconds, f_start, f_end)[:n]
                cursor += n + int(rng.uniform(0.0, 0.03) * SAMPLE_RATE)
            cursor += int(rng.uniform(0.06, 0.25) * SAMPLE_RATE)  # pause between words
            done = done or cursor >= stop
    peak = float(np.abs(speech).max())
    if peak > 0:
        speech *= PEAK / peak
    rms = np.sqrt((speech.reshape(num_frames, SAMPLES_PER_FRAME) ** 2).mean(axis=1))
    mouth = rms / max(float(rms.max()), 1e-12)
    audio = speech + rng.normal(0, NOISE_FLOOR, speech.shape)
    return audio.astype(np.float32), mouth.astype(np.float32)
