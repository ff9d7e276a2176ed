"""Talker data: keypoint vectors and files, audio/video alignment, the shard join, speech features."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from fomm_core.config import ConfigError, from_mapping
from fomm_core.errors import FommError
from fomm_core.talker import (
    SyncerConfig, TalkerClips, TalkerModelConfig, TalkerTrainConfig, align_audio_to_video,
    audio_features_from_wav, audio_frames_per_video_frame, extract_clip_keypoints, keypoints_path, kp_to_vector,
    load_clip_keypoints, save_clip_keypoints, speech_features, vector_to_kp, video_frames_for,
)
from _talker_helpers import fake_shard_store, one_thread, synthetic_clips  # noqa: F401 (fixture)


# --------------------------------------------------------------------------- keypoint vectors
def test_vector_layout_and_round_trip():
    value = torch.arange(3 * 10 * 2, dtype=torch.float32).view(3, 10, 2)
    jacobian = 100 + torch.arange(3 * 10 * 4, dtype=torch.float32).view(3, 10, 2, 2)
    vec = kp_to_vector({"value": value, "jacobian": jacobian})
    assert vec.shape == (3, 60)
    assert torch.equal(vec[0, :20], value[0].flatten()) and torch.equal(vec[0, 20:], jacobian[0].flatten())
    back = vector_to_kp(vec)
    assert torch.equal(back["value"], value) and torch.equal(back["jacobian"], jacobian)
    np_vec = kp_to_vector({"value": value.numpy(), "jacobian": jacobian.numpy()})
    assert isinstance(np_vec, np.ndarray) and np.array_equal(np_vec, vec.numpy())
    with pytest.raises(ValueError):
        vector_to_kp(torch.zeros(4, 61))


FOMM_A, FOMM_B = "a" * 64, "b" * 64  # weights hashes of two FOMM checkpoints


def test_keypoint_file_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    value, jacobian = rng.normal(size=(7, 10, 2)), rng.normal(size=(7, 10, 2, 2))
    path = keypoints_path(tmp_path, "train", "id00001#vidAAAAAAAA#000000#000007")
    save_clip_keypoints(path, value, jacobian, 25.0, FOMM_A)
    assert path.parent.name == "train" and path.name.endswith("#000007.npz")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    loaded = load_clip_keypoints(path)
    assert np.allclose(loaded["value"], value) and np.allclose(loaded["jacobian"], jacobian)
    assert loaded["fps"] == 25.0 and loaded["value"].dtype == np.float32 and loaded["fomm_sha256"] == FOMM_A
    np.savez(tmp_path / "old.npz", value=value, jacobian=jacobian, fps=np.float32(25))  # before hashes were recorded
    assert load_clip_keypoints(tmp_path / "old.npz")["fomm_sha256"] == ""
    with pytest.raises(FommError, match="not found"):
        load_clip_keypoints(tmp_path / "missing.npz")
    path.write_bytes(b"not an npz")
    with pytest.raises(FommError, match="rerun"):
        load_clip_keypoints(path)
    for bad in ("../x", "a/b", ".."):
        with pytest.raises(FommError, match="unsafe"):
            keypoints_path(tmp_path, "train", bad)
    with pytest.raises(ValueError):
        save_clip_keypoints(tmp_path / "bad.npz", value, jacobian[:, :, 0], 25.0, FOMM_A)


def test_extract_keypoints_from_float_or_uint8_batches():
    from fomm_core.model_config import KeypointDetectorConfig, ModelConfig
    from fomm_core.models import build_models

    torch.manual_seed(0)
    config = ModelConfig(num_kp=10, kp=KeypointDetectorConfig(block_expansion=4, max_features=16, num_blocks=2))
    detector = build_models(config)[0]
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    from_uint8 = extract_clip_keypoints(detector, [frames[:3], frames[3:]])
    floats = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    from_float = extract_clip_keypoints(detector, [floats[:2], floats[2:]])
    assert from_uint8["value"].shape == (5, 10, 2) and from_uint8["jacobian"].shape == (5, 10, 2, 2)
    assert np.allclose(from_uint8["value"], from_float["value"], atol=1e-5)
    assert np.allclose(from_uint8["jacobian"], from_float["jacobian"], atol=1e-5)
    assert detector.training  # mode restored


# --------------------------------------------------------------------------- alignment
def test_alignment_is_computed_from_the_lengths():
    audio = np.arange(101 * 2, dtype=np.float32).reshape(101, 2)
    frames, trimmed = align_audio_to_video(25, audio, 4)
    assert frames == 25 and trimmed.shape == (100, 2) and np.array_equal(trimmed, audio[:100])
    frames, trimmed = align_audio_to_video(25, audio[:99], 4)  # the last frame's audio is incomplete
    assert frames == 24 and trimmed.shape == (96, 2)
    frames, trimmed = align_audio_to_video(20, audio, 4)  # more audio than video
    assert frames == 20 and trimmed.shape == (80, 2)
    assert audio_frames_per_video_frame(100.0, 25.0, 4) == 4
    with pytest.raises(FommError, match="3.333"):
        audio_frames_per_video_frame(100.0, 30.0, 4)
    with pytest.raises(FommError, match="exactly 4"):
        audio_frames_per_video_frame(100.0, 50.0, 4)


def test_clips_from_store_join_trim_and_normalise(tmp_path):
    rng = np.random.default_rng(0)
    clip_id = "id00001#vidAAAAAAAA#000000#000025"
    silent = "id00002#vidBBBBBBBB#000000#000010"
    logmel = rng.normal(3.0, 2.0, size=(101, 26)).astype(np.float32)
    store = fake_shard_store(tmp_path / "shards", [(clip_id, "train", 25, logmel),
                                              (silent, "train", 10, np.zeros((0, 26), np.float32))])
    kp_dir = tmp_path / "kp"
    value = rng.normal(size=(25, 10, 2)).astype(np.float32)
    jacobian = rng.normal(size=(25, 10, 2, 2)).astype(np.float32)
    save_clip_keypoints(keypoints_path(kp_dir, "train", clip_id), value, jacobian, 25.0, FOMM_A)
    save_clip_keypoints(keypoints_path(kp_dir, "train", silent), value[:10], jacobian[:10], 25.0, FOMM_A)
    clips = TalkerClips.from_store(store, kp_dir, "train")
    (clip,) = clips.clips
    assert clips.skipped == [(silent, "no audio")]
    assert clip.num_frames == 25 and clip.audio.shape == (100, 26) and clip.mouth_open.shape == (25,)
    assert np.allclose(clip.audio.mean(axis=0), 0, atol=1e-5) and np.isclose(np.abs(clip.audio).max(), 1.0)
    assert np.array_equal(clip.keypoints, kp_to_vector({"value": value, "jacobian": jacobian}))
    assert clips.fomm_sha256 == FOMM_A
    # a folder mixing two FOMM checkpoints' keypoints (same shapes) is refused, naming the clip
    save_clip_keypoints(keypoints_path(kp_dir, "train", silent), value[:10], jacobian[:10], 25.0, FOMM_B)
    with pytest.raises(FommError, match=f"clip {re.escape(silent)}: keypoints from FOMM weights bbbbbbbbbbbb but clip "
                                        f"{re.escape(clip_id)}'s from aaaaaaaaaaaa"):
        TalkerClips.from_store(store, kp_dir, "train")
    # keypoints from another extraction (frame count differs) are refused, not silently misaligned
    save_clip_keypoints(keypoints_path(kp_dir, "train", clip_id), value[:20], jacobian[:20], 25.0, FOMM_A)
    with pytest.raises(FommError, match="rerun the keypoint stage"):
        TalkerClips.from_store(store, kp_dir, "train")


def test_clips_from_store_refuse_a_frame_rate_that_does_not_divide(tmp_path):
    clip_id = "id00001#vidAAAAAAAA#000000#000030"
    store = fake_shard_store(tmp_path / "shards", [(clip_id, "test", 30, np.zeros((100, 26), np.float32))], fps=30.0)
    save_clip_keypoints(keypoints_path(tmp_path / "kp", "test", clip_id), np.zeros((30, 10, 2)),
                        np.zeros((30, 10, 2, 2)), 30.0, FOMM_A)
    with pytest.raises(FommError, match="25 fps"):
        TalkerClips.from_store(store, tmp_path / "kp", "test")


def test_window_sampling_is_seeded_and_starts_after_the_source():
    clips = synthetic_clips(3, 30, seed=0)
    a = clips.sample_windows(5, 12, np.random.default_rng(7))
    b = clips.sample_windows(5, 12, np.random.default_rng(7))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["keypoints"].shape == (5, 12, 60) and a["audio"].shape == (5, 48, 26) and a["source"].shape == (5, 60)
    for i in range(5):  # find the window in its clip: the source is the frame before, audio the same frames
        found = False
        for clip in clips:
            kp = torch.from_numpy(clip.keypoints)
            for start in range(1, clip.num_frames - 11):
                if torch.equal(kp[start:start + 12], a["keypoints"][i]):
                    assert torch.equal(kp[start - 1], a["source"][i])
                    assert torch.equal(torch.from_numpy(clip.audio[start * 4:(start + 12) * 4]), a["audio"][i])
                    found = True
        assert found
    with pytest.raises(FommError, match="sequence_frames"):
        clips.sample_windows(2, 30, np.random.default_rng(0))


# --------------------------------------------------------------------------- speech features (fomm talk)
def test_video_length_follows_the_sample_count():
    assert video_frames_for(16000, 16000) == 25
    assert video_frames_for(16001, 16000) == 26  # a partial last frame still gets a frame
    assert video_frames_for(22050 * 3, 22050) == 75
    assert video_frames_for(640, 16000) == 1


def test_audio_features_from_wav_any_rate(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "speech.wav"
    samples = (0.3 * np.sin(np.arange(int(22050 * 1.3)) / 7) * 32767).astype(np.int16)
    wavfile.write(path, 22050, np.stack([samples, samples], axis=1))  # stereo at 22.05 kHz
    speech = audio_features_from_wav(path)
    assert speech.num_frames == 33  # ceil(1.3 s * 25)
    assert speech.features.shape == (33 * 4, 26) and speech.features.dtype == np.float32
    assert np.isclose(np.abs(speech.features).max(), 1.0) and abs(speech.duration_s - 1.3) < 1e-3
    same = speech_features(rng.normal(size=16000).astype(np.float32), 16000)
    assert same.num_frames == 25 and same.features.shape == (100, 26)
    with pytest.raises(FommError, match="no audio"):
        speech_features(np.zeros(0, np.float32), 16000)


# --------------------------------------------------------------------------- configs
def test_configs_validate_and_round_trip():
    from fomm_core.config import to_mapping

    for cls in (TalkerModelConfig, SyncerConfig, TalkerTrainConfig):
        default = cls()
        assert from_mapping(cls, to_mapping(default), cls.__name__) == default
    with pytest.raises(ConfigError, match="multiple of heads"):
        from_mapping(TalkerModelConfig, {"dim": 30, "heads": 4}, "talker_model")
    with pytest.raises(ConfigError, match="power of two"):
        from_mapping(SyncerConfig, {"audio_per_frame": 3}, "syncer")
    with pytest.raises(ConfigError, match="fit in sequence_frames"):
        from_mapping(TalkerTrainConfig, {"sequence_frames": 20}, "talker_train")
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(TalkerTrainConfig, {"learning_rate": 1.0}, "talker_train")
