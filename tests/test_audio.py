"""fomm_core.audio: WAV reading, resampling, log-mel features and their normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from fomm_core import audio
from fomm_core.errors import FommError

RATE = 16000


def tone(freq: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def band_centre_hz(band: int, n_mels: int = 26, rate: int = RATE) -> float:
    """Centre of mel band ``band`` (HTK mel scale, bands evenly spaced 0..rate/2), computed here."""
    top = 2595.0 * np.log10(1.0 + rate / 2 / 700.0)
    mel = top * (band + 1) / (n_mels + 1)
    return float(700.0 * (10 ** (mel / 2595.0) - 1.0))


@pytest.mark.parametrize("n", [0, 100, 159, 160, 161, 16000, 16037, 40 * 640])
def test_log_mel_frame_count_is_len_over_hop(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    feats = audio.log_mel(x)
    assert feats.shape == (n // 160, 26)
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_four_feature_frames_per_video_frame():
    frames = 37  # at 25 fps: 640 samples per video frame
    assert audio.log_mel(np.zeros(frames * 640, np.float32)).shape[0] == 4 * frames


@pytest.mark.parametrize("band", [2, 9, 17, 24])
def test_pure_tone_peaks_in_its_mel_band(band):
    feats = audio.log_mel(tone(band_centre_hz(band), 0.5))
    assert int(np.argmax(feats.mean(axis=0))) == band


def test_higher_tone_higher_band():
    peaks = [int(np.argmax(audio.log_mel(tone(f, 0.3)).mean(axis=0))) for f in (200, 800, 2400, 7000)]
    assert peaks == sorted(peaks) and len(set(peaks)) == 4


def test_frames_are_centred_at_half_hop():
    x = np.zeros(RATE, np.float32)
    x[50 * 160 + 80] = 1.0  # the centre of feature frame 50
    energy = audio.log_mel(x).sum(axis=1)
    assert int(np.argmax(energy)) == 50
    # Frames whose 25 ms windows do not reach the click see only the log floor.
    assert energy[47] == energy.min() and energy[53] == energy.min()


def test_silence_is_finite_floor():
    feats = audio.log_mel(np.zeros(1600, np.float32))
    assert np.isfinite(feats).all() and np.ptp(feats) == 0


def test_resample_length_and_frequency():
    x = tone(440.0, 1.0, rate=22050)
    y = audio.resample(x, 22050, RATE)
    assert y.dtype == np.float32
    assert len(y) == int(np.ceil(len(x) * RATE / 22050))
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * RATE / len(y)
    assert abs(peak_hz - 440.0) < 2.0
    assert abs(np.abs(y).max() - 0.5) < 0.02
    np.testing.assert_array_equal(audio.resample(x, 22050, 22050), x)


def test_read_wav_int16_stereo_mixes_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    data = np.stack([np.full(100, 16384, np.int16), np.zeros(100, np.int16)], axis=1)
    data[10] = (-32768, -32768)
    wavfile.write(path, 22050, data)
    samples, rate = audio.read_wav(path)
    assert rate == 22050
    assert samples.dtype == np.float32 and samples.shape == (100,)
    assert samples[0] == pytest.approx(0.25)
    assert samples[10] == pytest.approx(-1.0)


def test_read_wav_rejects_garbage(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"not a wav at all")
    with pytest.raises(FommError, match="bad.wav"):
        audio.read_wav(path)
    # A RIFF/WAVE header without a fmt chunk: scipy fails with a non-I/O exception type.
    headless = tmp_path / "headless.wav"
    headless.write_bytes(b"RIFF" + (12).to_bytes(4, "little") + b"WAVE" + b"data" + (0).to_bytes(4, "little"))
    with pytest.raises(FommError, match="headless.wav: cannot read WAV file"):
        audio.read_wav(headless)
    with pytest.raises(FommError, match="missing.wav: file not found"):
        audio.read_wav(tmp_path / "missing.wav")


def test_normalise_features_mean_removed_peak_one():
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(200, 26)).astype(np.float32)
    y = audio.normalise_features(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)
    assert np.abs(y).max() == pytest.approx(1.0)
    # Same shape of signal, only shifted and scaled.
    np.testing.assert_allclose(y * (np.abs(x - x.mean(0)).max()), x - x.mean(0), rtol=1e-4, atol=1e-4)
    assert audio.normalise_features(np.ones((3, 26), np.float32)).max() == 0.0


# --- streaming WAV -> log-mel (fomm talk on long speech, bounded memory) ---------------------
def _write_wav(path, rate, data):
    wavfile.write(str(path), rate, data)
    return path


def _reference(path):
    samples, rate = audio.read_wav(path)
    return audio.log_mel(audio.resample(samples, rate, audio.SAMPLE_RATE), audio.SAMPLE_RATE)


@pytest.mark.parametrize("rate,channels,kind,frames", [
    (16000, 1, "int16", 300_001),    # several blocks, no resampling
    (44100, 2, "int16", 400_000),    # stereo, several resampled pieces
    (48000, 1, "float32", 200_000),
    (22050, 1, "int32", 150_001),
    (8000, 1, "uint8", 50_000),
    (44100, 1, "int16", 700),        # shorter than the reflect padding: the whole-signal path
])
def test_streamed_features_equal_the_whole_signal_features(tmp_path, rate, channels, kind, frames):
    from fomm_core.audio_stream import wav_log_mel

    rng = np.random.default_rng(rate)
    x = rng.normal(0, 0.2, (frames, channels)).clip(-1, 1)
    data = {"int16": lambda: (x * 32767).astype(np.int16), "int32": lambda: (x * 2 ** 31 * 0.99).astype(np.int32),
            "uint8": lambda: (x * 127 + 128).astype(np.uint8), "float32": lambda: x.astype(np.float32)}[kind]()
    path = _write_wav(tmp_path / "a.wav", rate, data[:, 0] if channels == 1 else data)
    mel, count, got_rate = wav_log_mel(path)
    reference = _reference(path)
    assert (count, got_rate) == (frames, rate)
    assert mel.shape == reference.shape
    np.testing.assert_array_equal(mel, reference)


def test_24_bit_and_extensible_wavs_stream_like_scipy_reads_them(tmp_path):
    """A WAVE_FORMAT_EXTENSIBLE 24-bit file written byte by byte (scipy cannot write one)."""
    import struct

    from fomm_core.audio_stream import iter_wav_blocks, wav_layout

    ints = np.random.default_rng(0).integers(-2 ** 23, 2 ** 23, 5000, dtype=np.int64)
    raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    guid = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 48000, 3, 24, 22, 24, 4) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    path = tmp_path / "a24.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    layout = wav_layout(path)
    assert (layout.rate, layout.channels, layout.sample_bytes, layout.frames) == (16000, 1, 3, 5000)
    samples = np.concatenate(list(iter_wav_blocks(path, block_frames=777)))
    np.testing.assert_array_equal(samples, (ints * 256 / 2 ** 31).astype(np.float32))


def test_streaming_reader_errors_are_one_line(tmp_path):
    from fomm_core.audio_stream import wav_layout

    cases = {"text.wav": b"hello, not audio", "nodata.wav": b"RIFF\x04\x00\x00\x00WAVE",
             "alaw.wav": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes([6, 0, 1, 0, 0x40, 0x1f, 0, 0,
                                                                                   0x40, 0x1f, 0, 0, 1, 0, 8, 0])
             + b"data\x00\x00\x00\x00"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FommError) as err:
            wav_layout(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FommError, match="file not found"):
        wav_layout(tmp_path / "missing.wav")
