"""fomm talk end to end with real ffmpeg: pairing, exact lengths, audio muxing, sizes, errors.

Tiny untrained models (a talker with random output layers so the keypoints move, and the
tiny FOMM of the animate tests) keep the whole file to a few seconds of compute.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fomm_core.talker import KeypointStats, Talker, save_talker_checkpoint

from _inference_helpers import ffprobe_streams, run_cli, save_tiny_checkpoint
from _talker_helpers import tiny_model

FRAME = 48  # the tiny FOMM checkpoint's training size: the output resolution


def write_wav(path: Path, seconds: float, rate: int, channels: int = 1, seed: int = 0) -> int:
    """A 16-bit PCM WAV of noisy tones; returns the number of samples per channel."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    mono = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.02, n)
    data = np.repeat((mono * 32767).astype(np.int16)[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data.tobytes())
    return n


def write_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (7, 7), 0)
    assert cv2.imwrite(str(path), image)
    return path


def save_tiny_talker(path: Path) -> Path:
    """An untrained tiny talker with random output layers (a zero-initialised one stands still)."""
    torch.manual_seed(0)
    talker = Talker(tiny_model())
    for branch in [*talker.audio_branches, talker.free_branch]:
        torch.nn.init.normal_(branch.net[-1].weight, std=0.05)
    d = talker.config.kp_dim
    talker.set_stats(KeypointStats(mean=np.zeros(d, np.float32), std=np.ones(d, np.float32),
                                   motion_std=np.full(d, 0.05, np.float32), velocity_std=np.full(d, 0.01, np.float32)))
    save_talker_checkpoint(path, talker.eval())
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("talk")
    models = root / "models"
    models.mkdir()
    save_tiny_talker(models / "talker.pt")
    save_tiny_checkpoint(models / "fomm.pt", frame_size=FRAME)
    audio, images = root / "audio", root / "images"
    audio.mkdir()
    images.mkdir()
    samples = {
        "alice": (write_wav(audio / "alice.wav", 1.3, 22050, channels=2), 22050),
        "bob": (write_wav(audio / "bob.WAV", 0.52, 16000, seed=1), 16000),
    }
    write_wav(audio / "carol.wav", 0.3, 16000)  # no image
    write_image(images / "alice.png", 300, 200)
    write_image(images / "bob.JPG", 120, 260, seed=1)
    write_image(images / "dave.jpeg", 64, 64)  # no WAV
    (images / "notes.txt").write_text("not an image, not a candidate")
    return {"root": root, "samples": samples}


def check_video(path: Path, samples: int, rate: int) -> None:
    """Video and audio streams, frame count ceil(samples * 25 / rate), durations within a frame."""
    streams = ffprobe_streams(path)
    video, audio = streams["video"], streams["audio"]
    expected = math.ceil(samples * 25 / rate)
    assert int(video["nb_read_frames"]) == expected
    assert (video["width"], video["height"]) == (FRAME, FRAME)
    assert float(audio["duration"]) == pytest.approx(samples / rate, abs=0.005)  # the whole WAV
    assert abs(float(video["duration"]) - float(audio["duration"])) <= 1 / 25 + 1e-6


def test_folders_pair_by_name_and_report_the_rest(workspace):
    root = workspace["root"]
    result = run_cli(["talk", "--audio-dir", "audio", "--img-dir", "images", "--model-dir", "models",
                      "--out-dir", "out", "--device", "cpu", "--batch-size", "5"], root)
    out = root / "out"
    assert sorted(p.name for p in out.iterdir()) == ["alice.mp4", "bob.mp4"]  # no temporaries left
    for stem, (samples, rate) in workspace["samples"].items():
        check_video(out / f"{stem}.mp4", samples, rate)
    text = result.stdout
    assert "talk: 2 of 2 pair(s) done" in text
    assert "without an image" in text and "carol.wav" in text
    assert "without a WAV" in text and "dave.jpeg" in text
    assert "notes.txt" not in text
    assert "alice.wav + alice.png" in text and "33 frames" in text


def test_single_pair_with_out_file(workspace):
    root = workspace["root"]
    result = run_cli(["talk", "--audio", "audio/bob.WAV", "--image", "images/alice.png", "--model-dir", "models",
                      "--out", "single/bob_talks.mp4", "--device", "cpu", "--no-crop-face"], root)
    samples, rate = workspace["samples"]["bob"]
    check_video(root / "single" / "bob_talks.mp4", samples, rate)
    assert [p.name for p in (root / "single").iterdir()] == ["bob_talks.mp4"]
    assert "1 of 1 pair(s) done" in result.stdout and "unmatched" not in result.stdout


def test_image_without_a_face_falls_back_to_the_centre_with_a_note(workspace):
    root = workspace["root"]
    grey = root / "grey.png"
    cv2.imwrite(str(grey), np.full((90, 160, 3), 128, np.uint8))
    result = run_cli(["talk", "--audio", "audio/carol.wav", "--image", "grey.png", "--model-dir", "models",
                      "--out-dir", "grey_out", "--device", "cpu"], root)
    assert "no face found" in result.stdout and "centred" in result.stdout
    assert int(ffprobe_streams(root / "grey_out" / "carol.mp4")["video"]["nb_read_frames"]) == 8  # ceil(7.5)


def one_line_error(result, *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_inputs_are_one_line_errors(workspace):
    root = workspace["root"]
    (root / "empty_models").mkdir(exist_ok=True)
    (root / "fake.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    (root / "song.mp3").write_bytes(b"ID3\x03\x00\x00\x00" + bytes(64))
    (root / "lonely_audio").mkdir(exist_ok=True)
    write_wav(root / "lonely_audio" / "zed.wav", 0.2, 8000)
    pair = ["--image", "images/alice.png", "--device", "cpu", "--out-dir", "bad_out"]
    cases = [
        (["--audio", "audio/carol.wav", *pair, "--model-dir", "empty_models"],
         ("talker.pt not found", "dvc repro train-talker")),
        (["--audio", "fake.wav", *pair, "--model-dir", "models"], ("fake.wav", "cannot read WAV")),
        (["--audio", "song.mp3", *pair, "--model-dir", "models"], ("song.mp3", "cannot read WAV")),
        (["--audio-dir", "lonely_audio", "--img-dir", "images", "--model-dir", "models"],
         ("no pair", "zed.wav", "alice.png")),
        (["--audio", "audio/carol.wav", "--audio-dir", "audio", "--image", "images/alice.png"],
         ("mutually exclusive",)),
        (["--audio-dir", "audio", "--img-dir", "images", "--out-dir", "fake.wav"], ("fake.wav is a file, not a folder",)),
    ]
    for args, needles in cases:
        one_line_error(run_cli(["talk", *args], root, check=False), *needles)
    (root / "half_models").mkdir(exist_ok=True)
    (root / "half_models" / "talker.pt").write_bytes((root / "models" / "talker.pt").read_bytes())
    one_line_error(run_cli(["talk", "--audio", "audio/carol.wav", *pair, "--model-dir", "half_models"], root,
                           check=False), "fomm.pt not found", "dvc repro train-talker")
    assert not (root / "bad_out").exists() or list((root / "bad_out").iterdir()) == []


def test_a_bad_file_in_a_folder_fails_the_run_but_not_the_others(workspace):
    root = workspace["root"]
    audio = root / "mixed_audio"
    audio.mkdir()
    samples = write_wav(audio / "good.wav", 0.4, 16000)
    (audio / "broken.wav").write_bytes(b"not a wav at all")
    write_image(root / "images" / "good.png", 80, 80)
    write_image(root / "images" / "broken.png", 80, 80)
    result = run_cli(["talk", "--audio-dir", "mixed_audio", "--img-dir", "images", "--model-dir", "models",
                      "--out-dir", "mixed_out", "--device", "cpu"], root, check=False)
    one_line_error(result, "1 of 2 pair(s) failed", "broken.wav")
    assert [p.name for p in (root / "mixed_out").iterdir()] == ["good.mp4"]
    check_video(root / "mixed_out" / "good.mp4", samples, 16000)
