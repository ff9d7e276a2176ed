"""Syncers: the contrastive loss, and a syncer trained on synthetic speech finds injected offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fomm_core.errors import FommError
from fomm_core.talker import estimate_offset, lse_scores, sync_scores, train_syncers
from fomm_core.talker.syncer import info_nce
from _talker_helpers import delay_audio, one_thread, synthetic_clips, tiny_syncer  # noqa: F401 (fixture)


def test_info_nce_rewards_the_aligned_pair_and_ignores_missing_positions():
    emb = F.normalize(torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    valid = torch.ones(3, 6, dtype=torch.bool)
    aligned, accuracy = info_nce(emb, emb, valid, temperature=0.05)
    shifted, shifted_accuracy = info_nce(emb, emb.roll(1, dims=1), valid, temperature=0.05)
    assert float(accuracy) == 1.0 and float(shifted_accuracy) == 0.0
    assert float(aligned) < 0.1 < 2.0 < float(shifted)
    # padding a sample with missing positions does not change its loss
    padded_kp = torch.cat([emb[:1], torch.randn(1, 2, 16)], dim=1)
    padded_audio = torch.cat([emb[:1].roll(2, dims=1), torch.randn(1, 2, 16)], dim=1)
    mask = torch.tensor([[True] * 6 + [False] * 2])
    loss_padded, _ = info_nce(padded_kp, padded_audio, mask, 0.1)
    loss_plain, _ = info_nce(emb[:1], emb[:1].roll(2, dims=1), torch.ones(1, 6, dtype=torch.bool), 0.1)
    assert torch.allclose(loss_padded, loss_plain, atol=1e-6)


@pytest.fixture(scope="module")
def trained_syncer():
    clips = synthetic_clips(12, 60, seed=1)
    logged = []

    class Recorder:
        def log_metrics(self, metrics, step):
            logged.append((step, dict(metrics)))

    config = tiny_syncer(levels=1, steps=80, batch_size=16, candidates=10, log_every=40)
    syncers, metrics = train_syncers(clips, config, log=lambda line: None, logger=Recorder())
    return syncers, metrics, logged


def test_syncer_training_reports_metrics(trained_syncer):
    _, metrics, logged = trained_syncer
    assert [step for step, _ in logged] == [40, 80]
    assert set(logged[0][1]) == {"syncer/loss", "syncer/loss_l0", "syncer/acc_l0"}
    assert logged[1][1]["syncer/loss"] < logged[0][1]["syncer/loss"]
    assert metrics["syncer/acc_l0"] > 0.5  # chance is 1 / 10


@pytest.mark.parametrize("delay", [-2, 0, 1, 3])
def test_trained_syncer_finds_an_injected_audio_offset(trained_syncer, delay):
    syncers = trained_syncer[0]
    for clip in synthetic_clips(3, 60, seed=99):  # unseen clips
        assert estimate_offset(syncers, clip.keypoints, delay_audio(clip.audio, delay), max_offset=8) == delay


def test_sync_scores_are_lse_like(trained_syncer):
    syncers = trained_syncer[0]
    clip = synthetic_clips(1, 60, seed=5).clips[0]
    offsets, distances = sync_scores(syncers, clip.keypoints, clip.audio, max_offset=8)
    assert offsets.tolist() == list(range(-8, 9)) and distances.shape == (17,)
    assert np.all((distances >= 0) & (distances <= 2))
    aligned = lse_scores(offsets, distances)
    assert aligned["sync_offset"] == 0 and aligned["sync_distance"] == distances.min()
    assert aligned["sync_confidence"] == pytest.approx(np.median(distances) - distances.min())
    other = synthetic_clips(1, 60, seed=6).clips[0]  # someone else's speech: far and unconfident
    wrong = lse_scores(*sync_scores(syncers, clip.keypoints, other.audio, max_offset=8))
    assert wrong["sync_distance"] > aligned["sync_distance"] + 0.3
    assert wrong["sync_confidence"] < aligned["sync_confidence"]
    with pytest.raises(ValueError, match="too short"):
        sync_scores(syncers, clip.keypoints[:20], clip.audio[:80], max_offset=8)


def test_syncer_training_refuses_clips_too_short_for_a_level():
    with pytest.raises(FommError, match="syncer level 2"):
        train_syncers(synthetic_clips(2, 20, seed=0), tiny_syncer(levels=3, steps=1), log=lambda line: None)
