"""Audio helpers: WAV reading, resampling and log-mel features at 100 Hz.

Features are aligned with 25 fps video: ``log_mel`` returns ``len(samples) // hop`` frames,
frame ``t`` centred at ``(t + 0.5) * hop`` samples, so video frame ``k`` covers feature
frames ``4k .. 4k+3`` at the default 10 ms hop. The mel filterbank is written here (HTK mel
scale, triangular filters) so the features do not depend on torchaudio or librosa.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import FommError

SAMPLE_RATE = 16000
N_MELS = 26
FEATURE_RATE = 100  # feature frames per second at the default 10 ms hop
_LOG_FLOOR = 1e-10


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """``(samples, rate)``: float32 in -1..1, channels mixed down to mono."""
    from scipy.io import wavfile  # deferred: scipy submodules are slow to import

    try:
        rate, data = wavfile.read(str(path))
    except FileNotFoundError:
        raise FommError(f"{path}: file not found") from None
    except Exception as exc:  # scipy raises assorted types (UnboundLocalError...) on malformed headers
        raise FommError(f"{path}: cannot read WAV file ({type(exc).__name__}: {exc})") from None
    if data.dtype == np.int16:
        samples = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        samples = (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif data.dtype == np.uint8:
        samples = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.floating):
        samples = data.astype(np.float32)
    else:
        raise FommError(f"{path}: unsupported WAV sample type {data.dtype}")
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32), int(rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling to ``to_rate``; output length is ``ceil(n * to / from)``."""
    from scipy.signal import resample_poly  # deferred: ~1 s to import

    samples = np.asarray(samples, dtype=np.float32)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
    if from_rate == to_rate or samples.size == 0:
        return samples.copy()
    g = math.gcd(int(from_rate), int(to_rate))
    out = resample_poly(samples, int(to_rate) // g, int(from_rate) // g)
    return out.astype(np.float32)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters equally spaced on the mel scale."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins_hz = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bins_hz[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling))
    bank.flags.writeable = False
    return bank


def mel_band_centres(n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Centre frequency in Hz of each mel band (for plots and tests)."""
    return mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))[1:-1]


def log_mel(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS,
            win_s: float = 0.025, hop_s: float = 0.010) -> np.ndarray:
    """``(len(samples) // hop, n_mels)`` float32 natural-log mel filterbank energies.

    Hamming window, power spectrum from a zero-padded power-of-two FFT; the signal is
    reflect-padded at the edges (zero-padded when too short to reflect) so every frame is
    centred at ``(t + 0.5) * hop`` and the count is exactly ``len // hop``.
    """
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    win = int(round(win_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    if win <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be at least one sample, got {win} and {hop}")
    n_frames = x.size // hop
    if n_frames == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    # Frame t spans [t*hop + hop/2 - win/2, ... + win); pad so the first/last starts are valid.
    left = win // 2 - hop // 2
    needed = (n_frames - 1) * hop + win
    right = max(0, needed - left - x.size)
    mode = "reflect" if x.size > max(left, right) else "constant"
    padded = np.pad(x, (max(left, 0), right), mode=mode)
    if left < 0:
        padded = padded[-left:]
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][:n_frames]
    return mel_of_frames(frames, sample_rate, n_mels)


def mel_of_frames(frames: np.ndarray, sample_rate: int, n_mels: int = N_MELS) -> np.ndarray:
    """``(T, n_mels)`` log-mel energies of ``(T, win)`` float64 sample frames (see :func:`log_mel`).

    Shared by the whole-signal and the streaming (:mod:`fomm_core.audio_stream`) paths so
    both compute exactly the same numbers.
    """
    n_frames, win = frames.shape
    n_fft = 1 << (win - 1).bit_length()
    window = np.hamming(win)
    bank = mel_filterbank(n_mels, n_fft, int(sample_rate))
    out = np.empty((n_frames, n_mels), dtype=np.float32)
    chunk = 2048  # bounded temporary memory for long clips
    for s in range(0, n_frames, chunk):
        spec = np.fft.rfft(frames[s:s + chunk] * window, n=n_fft, axis=1)
        power = spec.real ** 2 + spec.imag ** 2
        out[s:s + chunk] = np.log(np.maximum(power @ bank.T, _LOG_FLOOR))
    return out


def normalise_features(x: np.ndarray) -> np.ndarray:
    """Per-feature mean removed over time, then scaled so the largest magnitude is 1."""
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    centred = x - x.mean(axis=0, keepdims=True)
    peak = float(np.abs(centred).max())
    return (centred / peak).astype(np.float32) if peak > 0 else centred.astype(np.float32)
