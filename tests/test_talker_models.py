"""Talker networks: pyramid, causality, teacher forcing vs rollout, streaming, shapes, checkpoints."""

from __future__ import annotations

import pytest
import torch

from fomm_core.errors import FommError
from fomm_core.talker import (
    Syncers, Talker, TemporalDiscriminator, load_syncers_checkpoint, load_talker_checkpoint, pyramid,
    save_syncers_checkpoint, save_talker_checkpoint,
)
from fomm_core.talker.audio_encoder import hold_causal
from fomm_core.talker.losses import sync_loss
from fomm_core.talker.pyramid import level_length
from _talker_helpers import one_thread, tiny_model, tiny_syncer  # noqa: F401 (fixture)


def _randomised_talker(seed: int = 0, **overrides) -> Talker:
    """A talker whose zero-initialised output layers are random, so every path carries signal."""
    torch.manual_seed(seed)
    talker = Talker(tiny_model(**overrides))
    for branch in [*talker.audio_branches, talker.free_branch]:
        torch.nn.init.normal_(branch.net[-1].weight, std=0.2)
    return talker.eval()


def _inputs(frames: int, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, frames * 4, 26, generator=g), torch.randn(batch, 60, generator=g),
            torch.randn(batch, frames, 60, generator=g))


# --------------------------------------------------------------------------- pyramid
@pytest.mark.parametrize("length", [3, 10, 41, 64])
def test_pyramid_keeps_a_constant_and_halves_the_length(length):
    x = torch.full((2, 3, length), 0.7) + torch.arange(3.0).view(1, 3, 1)  # a different constant per channel
    levels = pyramid(x, levels=4, kernel=7)
    assert [lvl.shape[-1] for lvl in levels] == [level_length(length, l) for l in range(4)]
    assert [lvl.shape[-1] for lvl in levels[1:]] == [-(-lvl.shape[-1] // 2) for lvl in levels[:-1]]  # ceil(T / 2)
    for lvl in levels:
        assert torch.allclose(lvl, lvl[..., :1].expand_as(lvl), atol=1e-6)
        assert torch.allclose(lvl[..., 0], x[..., 0], atol=1e-6)


def test_pyramid_smooths_before_subsampling():
    x = torch.zeros(1, 1, 32)
    x[..., ::2] = 1.0  # the fastest oscillation: plain subsampling would keep only the ones
    level1 = pyramid(x, levels=2, kernel=7)[1]
    assert level1.shape[-1] == 16
    assert (level1[..., 2:-2] - 3 / 7).abs().max() < 1e-6  # kept steps average 3 ones in 7, not 1


# --------------------------------------------------------------------------- causality and equivalences
def test_hold_causal_uses_only_finished_coarse_steps():
    coarse = torch.arange(1.0, 6.0).view(1, 1, 5)  # step j covers frames 2j, 2j+1
    held = hold_causal(coarse, 10, 2)[0, 0].tolist()
    assert held == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]


@pytest.mark.parametrize("t", [0, 13, 22])
def test_future_audio_does_not_change_past_frames(t):
    talker = _randomised_talker(levels=4)
    audio, source, _ = _inputs(32)
    with torch.no_grad():
        before = talker.generate(audio, source)
        changed = audio.clone()
        changed[:, (t + 1) * 4:] += torch.randn_like(changed[:, (t + 1) * 4:])
        after = talker.generate(changed, source)
    assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
    assert (before[:, t + 1:] - after[:, t + 1:]).abs().amax(dim=(0, 2)).min() > 1e-4  # every later frame moves


def test_teacher_forced_pass_equals_a_teacher_forced_rollout():
    talker = _randomised_talker(context=5)  # sequences longer than the context exercise the sliding window
    audio, source, keypoints = _inputs(17)
    with torch.no_grad():
        parallel = talker(source, keypoints, audio)
        frames, _ = talker.rollout(talker.start(source), talker.encode_audio(audio), teacher=keypoints)
        history = torch.cat([source[:, None], keypoints[:, :-1]], dim=1)
    assert torch.allclose(parallel, frames - history, atol=1e-5)


def test_streaming_in_chunks_equals_one_pass_with_bounded_state():
    talker = _randomised_talker(levels=3)
    audio, source, _ = _inputs(70)
    with torch.no_grad():
        whole = talker.generate(audio, source)
        chunks = list(talker.stream(audio, source, chunk_frames=12))
    assert [c.shape[1] for c in chunks] == [12] * 5 + [10]
    assert torch.allclose(torch.cat(chunks, dim=1), whole, atol=1e-5)
    with torch.no_grad():  # the rollout state never grows past the attention context
        _, state = talker.rollout(talker.start(source), talker.encode_audio(audio))
    assert all(k.shape[2] == talker.config.context - 1 for k, _ in state.caches)


def test_generate_rejects_too_little_audio():
    talker = _randomised_talker()
    audio, source, _ = _inputs(5)
    with pytest.raises(ValueError, match="cannot drive"):
        talker.generate(audio, source, num_frames=6)


# --------------------------------------------------------------------------- shapes and gradients
def test_talker_starts_still_and_every_part_gets_gradients():
    torch.manual_seed(0)
    talker = Talker(tiny_model())
    audio, source, keypoints = _inputs(10)
    generated = talker.generate(audio, source)
    assert generated.shape == (2, 10, 60)
    assert torch.equal(generated, source[:, None].expand_as(generated))  # zero-initialised velocity
    velocity, weights = talker(source, keypoints, audio, return_weights=True)
    assert weights.shape == (talker.config.levels + 1, 2, 10, 60)
    assert torch.allclose(weights.sum(dim=0), torch.ones(2, 10, 60))
    talker = _randomised_talker()
    talker.train()
    (talker.generate(audio, source) - keypoints).pow(2).mean().backward()
    missing = [n for n, p in talker.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_discriminator_scores_every_window_length_that_fits():
    torch.manual_seed(0)
    disc = TemporalDiscriminator(60, [5, 10, 20, 40], hidden=8)
    source, keypoints = torch.randn(3, 60), torch.randn(3, 24, 60, requires_grad=True)
    scores = disc(source, keypoints)
    assert len(scores) == 3  # 40 does not fit in 24 frames
    assert [s.shape for s in scores] == [(3, 20), (3, 8), (3, 1)]  # stride max(1, w // 4)
    sum(s.sum() for s in scores).backward()
    assert keypoints.grad.abs().sum() > 0
    assert [all(p.grad is not None for p in critic.parameters()) for critic in disc.critics] == [True] * 3 + [False]


def test_syncer_embeddings_and_sync_loss_gradients():
    torch.manual_seed(0)
    syncers = Syncers(tiny_syncer(levels=3))
    ek = syncers.embed_kp(1, torch.randn(7, 60, 5))
    ea = syncers.embed_audio(2, torch.randn(7, 26, 20))
    assert ek.shape == ea.shape == (7, 16)
    assert torch.allclose(ek.norm(dim=-1), torch.ones(7)) and torch.allclose(ea.norm(dim=-1), torch.ones(7))
    syncers.requires_grad_(False)
    keypoints = torch.randn(2, 24, 60, requires_grad=True)
    sims = syncers.aligned_similarity(keypoints, torch.randn(2, 96, 26))
    assert [s.shape for s in sims] == [(2, 20), (2, 8), (2, 2)]  # 24, 12, 6 frames: T_l - 4 windows
    loss = sync_loss(syncers, keypoints, torch.randn(2, 96, 26))
    assert -1 <= float(loss.detach()) <= 1
    loss.backward()
    assert keypoints.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shorter than one syncer window"):
        sync_loss(syncers, keypoints[:, :4], torch.randn(2, 16, 26))


# --------------------------------------------------------------------------- checkpoints
def test_talker_checkpoint_round_trip(tmp_path):
    talker = _randomised_talker(seed=3)
    with torch.no_grad():
        talker.kp_mean.uniform_()  # statistics are buffers: they must travel too
    path = tmp_path / "talker.pt"
    talker.fomm_sha256 = "c" * 64
    save_talker_checkpoint(path, talker, extra={"metrics": {"talker/sync": -0.5}})
    loaded = load_talker_checkpoint(path)
    assert loaded.config == talker.config and not loaded.training and loaded.fomm_sha256 == "c" * 64
    audio, source, _ = _inputs(9)
    with torch.no_grad():
        assert torch.equal(loaded.generate(audio, source), talker.generate(audio, source))
    assert torch.load(path, weights_only=True)["metrics"] == {"talker/sync": -0.5}


def test_syncers_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    syncers = Syncers(tiny_syncer()).eval()
    syncers.fomm_sha256 = "d" * 64
    save_syncers_checkpoint(tmp_path / "s.pt", syncers)
    loaded = load_syncers_checkpoint(tmp_path / "s.pt")
    windows = torch.randn(3, 60, 5)
    assert loaded.config == syncers.config and loaded.fomm_sha256 == "d" * 64
    assert torch.equal(loaded.embed_kp(0, windows), syncers.embed_kp(0, windows))


def test_bad_checkpoints_are_clear_errors(tmp_path):
    talker = _randomised_talker()
    with pytest.raises(FommError, match="not found"):
        load_talker_checkpoint(tmp_path / "missing.pt")
    good = tmp_path / "talker.pt"
    save_talker_checkpoint(good, talker)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:200])
    with pytest.raises(FommError, match="corrupt"):
        load_talker_checkpoint(corrupt)
    with pytest.raises(FommError, match="fomm-syncers-v1"):  # a talker file where syncers are expected
        load_syncers_checkpoint(good)
    state = torch.load(good, weights_only=True)
    state["config"]["dim"] = 64  # weights no longer match the config
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(FommError, match="do not match"):
        load_talker_checkpoint(tmp_path / "mismatch.pt")
