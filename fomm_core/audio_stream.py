"""WAV to log-mel features in bounded memory, for speech of any length (``fomm talk``).

Reading a whole WAV, resampling it and framing it holds several float64 copies of the
signal: ~170 MB more peak memory for 10 minutes of 44.1 kHz audio. Here the file is read
in blocks, resampled block by block with enough overlap that the polyphase filter sees
exactly the samples it would see on the whole signal, and framed with the same reflect
padding at both ends as :func:`fomm_core.audio.log_mel`. Only the features are kept
(26 floats per 10 ms: 6 MB for 10 minutes), so memory does not grow with the audio beyond
them, and the numbers equal the whole-signal path (to float rounding of the resampler).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .audio import N_MELS, SAMPLE_RATE, log_mel, mel_of_frames
from .errors import FommError

BLOCK_FRAMES = 1 << 16  # WAV frames read at once
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


@dataclass(frozen=True)
class WavLayout:
    rate: int
    channels: int
    sample_bytes: int
    is_float: bool
    data_offset: int
    frames: int  # sample frames actually present (a truncated file has fewer than declared)


def wav_layout(path: str | os.PathLike) -> WavLayout:
    """Where a WAV file's samples are and how they are stored, read from its RIFF chunks."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise FommError(f"{path}: cannot read WAV file (not RIFF/WAVE); convert it, e.g. ffmpeg -i IN OUT.wav")
            fmt = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    raise FommError(f"{path}: cannot read WAV file (no data chunk: truncated or damaged)")
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"fmt ":
                    fmt = f.read(min(length, 64))
                    f.seek(length - len(fmt) + (length & 1), os.SEEK_CUR)
                elif name == b"data":
                    if fmt is None or len(fmt) < 16:
                        raise FommError(f"{path}: cannot read WAV file (data chunk before a valid fmt chunk)")
                    return _layout(path, fmt, f.tell(), min(length, size - f.tell()))
                else:
                    f.seek(length + (length & 1), os.SEEK_CUR)
    except FileNotFoundError:
        raise FommError(f"{path}: file not found") from None
    except OSError as exc:
        raise FommError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _layout(path, fmt: bytes, offset: int, data_bytes: int) -> WavLayout:
    code, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if code == _EXTENSIBLE and len(fmt) >= 26:
        code = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the format code
    is_float = code == _FLOAT
    if code not in (_PCM, _FLOAT) or bits not in ((32, 64) if is_float else (8, 16, 24, 32)):
        raise FommError(f"{path}: cannot read WAV file (format {code}, {bits} bits); use PCM 8/16/24/32-bit "
                        f"or 32/64-bit float")
    if not 1 <= channels <= 64 or rate <= 0 or block_align != channels * bits // 8:
        raise FommError(f"{path}: cannot read WAV file (inconsistent header: {channels} channels, {rate} Hz, "
                        f"block {block_align})")
    return WavLayout(rate, channels, bits // 8, is_float, offset, max(0, data_bytes) // block_align)


def _to_float(raw: bytes, layout: WavLayout) -> np.ndarray:
    """Interleaved samples to mono float32 in -1..1, scaled exactly as :func:`fomm_core.audio.read_wav`."""
    width = layout.sample_bytes
    if layout.is_float:
        samples = np.frombuffer(raw, "<f4" if width == 4 else "<f8").astype(np.float32)
    elif width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    else:
        if width == 3:  # 24-bit: left-justified into int32, as scipy reads it
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.uint32)
            ints = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)).view(np.int32)
        else:
            ints = np.frombuffer(raw, "<i4")
        samples = (ints.astype(np.float64) / 2147483648.0).astype(np.float32)
    if layout.channels > 1:
        samples = samples.reshape(-1, layout.channels).mean(axis=1, dtype=np.float32)
    return samples


def iter_wav_blocks(path: str | os.PathLike, layout: WavLayout | None = None,
                    block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a WAV file, in order."""
    layout = layout or wav_layout(path)
    frame_bytes = layout.channels * layout.sample_bytes
    with open(path, "rb") as f:
        f.seek(layout.data_offset)
        left = layout.frames
        while left > 0:
            take = min(left, block_frames)
            raw = f.read(take * frame_bytes)
            if len(raw) < take * frame_bytes:
                raise FommError(f"{path}: the WAV file changed or ended while it was read")
            left -= take
            yield _to_float(raw, layout)


def _filter_reach(up: int, down: int) -> int:
    """Input samples on each side that one output of scipy's resample_poly depends on."""
    return math.ceil(10 * max(up, down) / up) + 2  # its default filter: half-length 10 * max(up, down)


def resampled_blocks(blocks: Iterator[np.ndarray], from_rate: int, to_rate: int,
                     total: int) -> Iterator[np.ndarray]:
    """Polyphase resampling of a block stream, equal to resampling the whole signal.

    Each piece is resampled together with ``margin`` neighbouring input samples on both
    sides (a multiple of ``down`` so output indices stay integral), and only the outputs
    whose filter support lies inside the piece-with-margins are kept.
    """
    from scipy.signal import resample_poly  # deferred: slow to import

    g = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // g, int(from_rate) // g
    if up == down:
        yield from blocks
        return
    margin = -(-_filter_reach(up, down) // down) * down
    step = max(1, BLOCK_FRAMES // down) * down  # input samples per output piece
    buffer = np.zeros(0, np.float32)
    start = 0  # global input index of buffer[0]
    done = 0  # input samples whose outputs were emitted
    exhausted = False
    while done < total:
        while not exhausted and start + buffer.size < min(total, done + step + margin):
            block = next(blocks, None)
            if block is None:
                exhausted = True
            else:
                buffer = np.concatenate([buffer, block])
        end = min(done + step, total)
        lo = max(0, done - margin)
        hi = min(total, end + margin, start + buffer.size)
        out = resample_poly(buffer[lo - start: hi - start], up, down).astype(np.float32)
        first = (done - lo) * up // down
        last = -(-(end - lo) * up // down) if end == total else (end - lo) * up // down
        yield out[first:last]
        done = end
        keep = max(0, done - margin) - start
        buffer, start = buffer[keep:], start + keep


def log_mel_stream(blocks: Iterator[np.ndarray], total: int, sample_rate: int = SAMPLE_RATE,
                   n_mels: int = N_MELS, win_s: float = 0.025, hop_s: float = 0.010) -> np.ndarray:
    """:func:`fomm_core.audio.log_mel` of a signal given as blocks (``total`` samples in all)."""
    win, hop = int(round(win_s * sample_rate)), int(round(hop_s * sample_rate))
    n_frames = total // hop
    left = win // 2 - hop // 2
    needed = (n_frames - 1) * hop + win
    right = max(0, needed - left - total)
    if n_frames == 0 or not (total > max(left, right) and left >= 0):
        # Too short to reflect (or an exotic window): the whole-signal path, which is small here.
        return log_mel(np.concatenate(list(blocks) or [np.zeros(0, np.float32)]), sample_rate, n_mels, win_s, hop_s)
    out = np.empty((n_frames, n_mels), np.float32)
    buffer = np.zeros(0, np.float64)
    start = 0
    t = 0  # next feature frame
    chunk = 2048
    source = iter(blocks)
    exhausted = False
    while t < n_frames:
        t_end = min(n_frames, t + chunk)
        lo = t * hop - left
        hi = (t_end - 1) * hop - left + win
        while not exhausted and start + buffer.size < min(hi, total):
            block = next(source, None)
            if block is None:
                exhausted = True
            else:
                buffer = np.concatenate([buffer, np.asarray(block, np.float64)])
        idx = np.arange(lo, hi)
        idx = np.abs(idx)  # reflect at the start: -k -> k
        idx = np.where(idx >= total, 2 * (total - 1) - idx, idx)  # reflect at the end
        segment = buffer[idx - start]
        frames = np.lib.stride_tricks.sliding_window_view(segment, win)[::hop][: t_end - t]
        out[t:t_end] = mel_of_frames(frames, sample_rate, n_mels)
        t = t_end
        keep = max(0, min(t * hop - left, total - win) - start)
        buffer, start = buffer[keep:], start + keep
    return out


def wav_log_mel(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int, int]:
    """``(log-mel (T, 26) at 100 Hz, number of samples, sample rate)`` of a WAV file of any length."""
    layout = wav_layout(path)
    if layout.frames == 0:
        raise FommError(f"{path}: no audio samples")
    total = -(-layout.frames * sample_rate // layout.rate)  # resample_poly's output length
    blocks = resampled_blocks(iter_wav_blocks(path, layout), layout.rate, sample_rate, layout.frames)
    return log_mel_stream(blocks, total, sample_rate), layout.frames, layout.rate
