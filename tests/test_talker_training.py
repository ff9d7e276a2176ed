"""Talker training end to end on tiny synthetic clips: metrics, determinism, audio driving the
mouth, evaluation keys, and keypoints streamed to the real FOMM renderer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fomm_core.errors import FommError
from fomm_core.talker import (
    TalkerEvalConfig, evaluate_talker, kp_to_vector, speech_features, talk_keypoints, train_syncers, train_talker,
)
from _talker_helpers import one_thread, synthetic_clips, tiny_model, tiny_syncer, tiny_train  # noqa: F401 (fixture)

EVAL_KEYS = {
    "gen_sync_distance", "gen_sync_confidence", "gen_sync_offset_abs", "gen_sync_cosine",
    "gt_sync_distance", "gt_sync_confidence", "gt_sync_offset_abs", "gt_sync_cosine",
    "shuffled_sync_distance", "shuffled_sync_confidence", "shuffled_sync_offset_abs", "shuffled_sync_cosine",
    "kp_l2", "gen_head_velocity_std", "gt_head_velocity_std", "gen_kp_velocity_std", "gt_kp_velocity_std",
    "mouth_corr", "shuffled_mouth_corr", "gt_mouth_corr", "num_clips", "sync_clips",
}


class Recorder:
    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step):
        self.logged.append((step, dict(metrics)))


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def data():
    return synthetic_clips(12, 60, seed=1), synthetic_clips(3, 60, seed=99)


@pytest.fixture(scope="module")
def syncers(data):
    return train_syncers(data[0], tiny_syncer(steps=60, batch_size=16), log=quiet)[0]


def test_tiny_end_to_end(data, syncers):
    train, test = data
    recorder = Recorder()
    lines = []
    talker, metrics = train_talker(train, syncers, tiny_train(), log=lines.append, logger=recorder,
                                   model_config=tiny_model())
    assert [step for step, _ in recorder.logged] == [3, 6]
    teacher, free = recorder.logged[0][1], recorder.logged[1][1]
    assert teacher["talker/free_running"] == 0 and free["talker/free_running"] == 1
    assert {"talker/loss", "talker/sync", "talker/l2_velocity"} <= set(teacher)
    assert {"talker/gan_g", "talker/gan_d", "talker/l2_position"} <= set(free)
    assert len(lines) == 2 and lines[0].startswith("talker step 3")
    assert metrics["talker/seconds"] > 0 and not talker.training
    result = evaluate_talker(talker, syncers, test, TalkerEvalConfig(max_offset=5), clips_train=train)
    assert set(result) == EVAL_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    assert result["num_clips"] == 3 and result["sync_clips"] == 3
    assert result["gt_mouth_corr"] > 0.9  # the probe reads the mouth from true keypoints
    without_probe = evaluate_talker(talker, syncers, test, TalkerEvalConfig(max_offset=5, max_clips=1))
    assert "mouth_corr" not in without_probe and without_probe["num_clips"] == 1
    with pytest.raises(FommError, match="max_offset"):
        evaluate_talker(talker, syncers, test, TalkerEvalConfig(max_offset=40))


def test_training_is_deterministic_for_a_seed(data, syncers):
    def weights(seed):
        talker, _ = train_talker(data[0], syncers, tiny_train(steps=4, teacher_forcing_steps=2, seed=seed), log=quiet,
                                 model_config=tiny_model())
        return talker.state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_audio_drives_the_mouth(data, syncers):
    train, test = data
    config = tiny_train(steps=80, teacher_forcing_steps=60, batch_size=8, sequence_frames=16, log_every=80)
    talker, _ = train_talker(train, syncers, config, log=quiet, model_config=tiny_model())
    result = evaluate_talker(talker, syncers, test, TalkerEvalConfig(max_offset=8), clips_train=train)
    assert result["mouth_corr"] > 0.5
    assert result["mouth_corr"] > result["shuffled_mouth_corr"] + 0.4
    assert result["gen_sync_distance"] < result["shuffled_sync_distance"] - 0.3
    assert result["gen_sync_confidence"] > result["shuffled_sync_confidence"]


def test_training_refuses_mismatched_settings(data, syncers):
    with pytest.raises(FommError, match="coarsest syncer window"):
        train_talker(data[0], syncers, tiny_train(sequence_frames=8, disc_windows=[5]), log=quiet,
                     model_config=tiny_model())
    with pytest.raises(FommError, match="num_kp"):
        train_talker(data[0], syncers, tiny_train(), log=quiet, model_config=tiny_model(num_kp=5))


def test_talk_keypoints_stream_into_the_fomm_renderer(data, syncers):
    from fomm_core.inference.animate import Animator
    from fomm_core.model_config import (
        DenseMotionConfig, GeneratorConfig, KeypointDetectorConfig, ModelConfig,
    )
    from fomm_core.models import build_models

    talker, _ = train_talker(data[0], syncers, tiny_train(steps=2, teacher_forcing_steps=1), log=quiet,
                             model_config=tiny_model())
    torch.manual_seed(0)
    fomm = ModelConfig(num_kp=10, kp=KeypointDetectorConfig(block_expansion=4, max_features=16, num_blocks=2),
                       generator=GeneratorConfig(block_expansion=4, max_features=16, num_down_blocks=1,
                                                 num_bottleneck_blocks=1,
                                                 dense_motion=DenseMotionConfig(block_expansion=4, max_features=16,
                                                                                num_blocks=2)))
    kp_detector, generator, _ = build_models(fomm)
    source = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    animator = Animator(kp_detector, generator, source, channels_last=False)
    samples = np.random.default_rng(0).normal(0, 0.1, 16000 * 2 + 100).astype(np.float32)
    speech = speech_features(samples, 16000)
    assert speech.num_frames == 51  # 2.00625 s at 25 fps, rounded up
    threads = torch.get_num_threads()
    chunks = list(talk_keypoints(talker, animator.cache.kp, speech, chunk_frames=16))
    assert torch.get_num_threads() == threads
    assert [c["value"].shape[0] for c in chunks] == [16, 16, 16, 3]
    assert chunks[0]["value"].shape == (16, 10, 2) and chunks[0]["jacobian"].shape == (16, 10, 2, 2)
    streamed = torch.cat([kp_to_vector(c) for c in chunks])
    with torch.no_grad():
        whole = talker.generate(torch.from_numpy(speech.features)[None], kp_to_vector(animator.cache.kp))[0]
    assert torch.allclose(streamed, whole, atol=1e-5)
    frames = animator.generate(chunks[-1])
    assert frames.shape == (3, 3, 32, 32) and torch.isfinite(frames).all()


def test_a_progress_callback_gets_every_step_and_the_logged_means(data, syncers):
    """What `train-talker` shows and writes to talker_losses.tsv: a report per step (the bar),
    the logged means at log points (the curve rows); no plain lines while a display is on."""
    lines, reports, recorder = [], [], Recorder()
    train_talker(data[0], syncers, tiny_train(steps=4, teacher_forcing_steps=2, log_every=2), log=lines.append,
                 logger=recorder, model_config=tiny_model(), on_step=reports.append)
    assert [r.step for r in reports] == [1, 2, 3, 4] and {r.total for r in reports} == {4}
    assert [r.step for r in reports if r.logged is not None] == [2, 4]
    assert [dict(r.logged) for r in reports if r.logged is not None] == [m for _, m in recorder.logged]
    assert all(r.samples_per_second > 0 and "talker/loss" in r.losses for r in reports)
    assert lines == []
