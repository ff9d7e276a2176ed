"""Training the syncers, then the talker against them (MS-Sync's two stages).

Both loops are single-process and deterministic on the CPU for a given seed: windows come
from a numpy Generator seeded with ``config.seed`` and the weights from
``torch.manual_seed(config.seed)``. ``logger`` (anything with ``log_metrics(dict, step)``,
e.g. the MLflow logger) receives the numbers every ``log_every`` steps, averaged over those
steps; ``on_step`` (a progress display) a :class:`fomm_core.progress.StepReport` after
every step, with those means at the log points. Without ``on_step`` the log points are
lines through ``log``.

The talker is trained in two phases. Teacher forcing (``teacher_forcing_steps``): every
frame's velocity is predicted from the true history in one parallel pass, with the
velocity L2 and sync losses; it teaches quickly how audio moves the face. Free running
(the remaining steps): the talker rolls out from the source keypoints over the whole
window exactly as at inference, and is trained through the rollout with the adversarial
loss (temporal discriminator, hinge), the multi-scale sync loss of the frozen syncers and
the small L2 terms; this is what keeps long rollouts realistic and in sync.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np
import torch

from ..errors import FommError
from ..progress import OnStep, StepReport, report_line
from .config import SyncerConfig, TalkerModelConfig, TalkerTrainConfig, check_compatible
from .dataset import TalkerClips
from .discriminator import TemporalDiscriminator
from .generator import Talker
from .losses import discriminator_hinge_loss, generator_hinge_loss, position_l2, sync_loss, velocity_l2
from .syncer import Syncers, info_nce
from .threads import limited_threads

Log = Callable[[str], None]
# The metrics the talker logs (some only in one phase), in the order of its curve's columns.
TALKER_METRICS = ("talker/loss", "talker/sync", "talker/l2_velocity", "talker/l2_position", "talker/gan_g",
                  "talker/gan_d", "talker/free_running")


def syncer_metrics(config: SyncerConfig) -> list[str]:
    """The metrics the syncer loop logs, in the order of its curve's columns."""
    per_level = [f"syncer/{kind}_l{level}" for level in range(config.levels) for kind in ("loss", "acc")]
    return ["syncer/loss", *per_level]


class _Averages:
    """Running sums of scalar metrics between two logging points."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] += float(v)
            self.counts[k] += 1

    def pop(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums.clear()
        self.counts.clear()
        return out


def _check_clips(clips: TalkerClips, kp_dim: int, n_mels: int, audio_per_frame: int) -> None:
    if (clips.kp_dim, clips.n_mels, clips.audio_per_frame) != (kp_dim, n_mels, audio_per_frame):
        raise FommError(
            f"the clips have {clips.kp_dim} keypoint values, {clips.n_mels} mel bands and {clips.audio_per_frame} "
            f"audio frames per video frame; the config expects {kp_dim}, {n_mels} and {audio_per_frame} "
            "(num_kp must match the keypoint detector)")


class _Reporter:
    """After each step: the running means, and at log points the logger and a report."""

    def __init__(self, prefix: str, total: int, log_every: int, batch_size: int, log: Log, logger: Any,
                 on_step: OnStep | None):
        self.prefix, self.total, self.log_every, self.batch_size = prefix, total, log_every, batch_size
        self.log, self.logger, self.on_step = log, logger, on_step
        self.averages = _Averages()
        self.last: dict[str, float] = {}
        self.started = time.perf_counter()

    def step(self, step: int, values: dict[str, float], shown: dict[str, float]) -> None:
        """``values`` are averaged and logged; ``shown`` are this step's values for a progress bar."""
        self.averages.add(**values)
        logged = None
        if step % self.log_every == 0 or step == self.total:
            logged = self.last = self.averages.pop()
            if self.logger is not None:
                self.logger.log_metrics(logged, step)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        report = StepReport(step, self.total, shown, step * self.batch_size / elapsed, logged)
        if self.on_step is not None:
            self.on_step(report)
        elif logged is not None:
            self.log(report_line(self.prefix, report))

    def seconds(self) -> float:
        return time.perf_counter() - self.started


# ---------------------------------------------------------------------- syncers
class _SyncerLevelData:
    """One pyramid level of every clip, for sampling runs of consecutive windows."""

    def __init__(self, syncers: Syncers, clips: TalkerClips, level: int):
        self.level = level
        self.kp: list[torch.Tensor] = []
        self.audio: list[torch.Tensor] = []
        self.count: list[int] = []
        for clip in clips:
            kp_pyr, au_pyr = syncers.pyramids(torch.from_numpy(clip.keypoints)[None],
                                              torch.from_numpy(clip.audio)[None])
            kw, aw = syncers.windows(kp_pyr[level], au_pyr[level])
            if kw.shape[1] >= 2:  # InfoNCE needs a negative
                self.kp.append(kw[0])
                self.audio.append(aw[0])
                self.count.append(kw.shape[1])

    def sample(self, batch: int, candidates: int, rng: np.random.Generator):
        m = min(candidates, max(self.count))
        kp = torch.zeros(batch, m, *self.kp[0].shape[1:])
        audio = torch.zeros(batch, m, *self.audio[0].shape[1:])
        valid = torch.zeros(batch, m, dtype=torch.bool)
        for b in range(batch):
            i = int(rng.integers(len(self.kp)))
            take = min(m, self.count[i])
            start = int(rng.integers(self.count[i] - take + 1))
            kp[b, :take] = self.kp[i][start:start + take]
            audio[b, :take] = self.audio[i][start:start + take]
            valid[b, :take] = True
        return kp, audio, valid


def train_syncers(clips: TalkerClips, config: SyncerConfig, log: Log = print, logger: Any = None,
                  on_step: OnStep | None = None) -> tuple[Syncers, dict[str, float]]:
    """Train one keypoint/audio encoder pair per pyramid level with symmetric InfoNCE.

    Metrics: ``syncer/loss`` and, per level, ``syncer/loss_l{l}`` and ``syncer/acc_l{l}``
    (how often the aligned window wins among the candidates; chance is 1/candidates).
    """
    with limited_threads(config.threads):
        return _train_syncers(clips, config, log, logger, on_step)


def _train_syncers(clips: TalkerClips, config: SyncerConfig, log: Log, logger: Any,
                   on_step: OnStep | None) -> tuple[Syncers, dict[str, float]]:
    _check_clips(clips, config.kp_dim, config.n_mels, config.audio_per_frame)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    syncers = Syncers(config)
    syncers.set_stats(clips.stats())
    data = [_SyncerLevelData(syncers, clips, level) for level in range(config.levels)]
    for level, d in enumerate(data):
        if not d.kp:
            frames = (config.window + 1) * 2 ** level
            raise FommError(f"no clip is long enough for syncer level {level} (about {frames} frames needed); "
                            "lower syncer.levels or use longer clips")
    optimizer = torch.optim.Adam(syncers.parameters(), lr=config.lr, betas=tuple(config.betas))
    reporter = _Reporter("syncer", config.steps, config.log_every, config.batch_size, log, logger, on_step)
    syncers.train()
    for step in range(1, config.steps + 1):
        losses = []
        values: dict[str, float] = {}
        for level, d in enumerate(data):
            kp, audio, valid = d.sample(config.batch_size, config.candidates, rng)
            b, m = valid.shape
            ek = syncers.embed_kp(level, kp.flatten(0, 1)).view(b, m, -1)
            ea = syncers.embed_audio(level, audio.flatten(0, 1)).view(b, m, -1)
            loss, accuracy = info_nce(ek, ea, valid, config.temperature)
            losses.append(loss)
            values[f"syncer/loss_l{level}"] = float(loss.detach())
            values[f"syncer/acc_l{level}"] = float(accuracy.detach())
        total = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        loss = {"syncer/loss": float(total.detach())}
        reporter.step(step, {**loss, **values}, loss)
    syncers.eval()
    metrics = dict(reporter.last)
    metrics["syncer/seconds"] = reporter.seconds()
    return syncers, metrics


# ---------------------------------------------------------------------- talker
def _frozen(syncers: Syncers) -> Syncers:
    """An eval-mode copy that takes no gradient (the caller's module is left as it is)."""
    frozen = copy.deepcopy(syncers).eval()
    frozen.requires_grad_(False)
    return frozen


def _teacher_forced_losses(talker: Talker, batch: dict[str, torch.Tensor], config: TalkerTrainConfig):
    """Every frame predicted from the true history in one pass: velocity L2."""
    source, target = batch["source"], batch["keypoints"]
    velocity = talker(source, target, batch["audio"])
    generated = torch.cat([source.unsqueeze(1), target[:, :-1]], dim=1) + velocity
    l2_velocity = (((generated - target) / talker.velocity_std) ** 2).mean()  # the true history cancels
    values = {"talker/free_running": 0.0, "talker/l2_velocity": float(l2_velocity.detach())}
    return generated, config.weight_velocity * l2_velocity, values


def _free_running_losses(talker: Talker, discriminator: TemporalDiscriminator, opt_d: torch.optim.Optimizer,
                         batch: dict[str, torch.Tensor], config: TalkerTrainConfig):
    """A rollout from the source as at inference; one discriminator step, then the
    generator's adversarial and L2 terms (the sync term is added by the caller)."""
    source, target = batch["source"], batch["keypoints"]
    generated = talker.generate(batch["audio"], source)
    values = {"talker/free_running": 1.0}
    gan_g = generated.new_zeros(())
    if config.weight_adversarial > 0:
        loss_d = discriminator_hinge_loss(discriminator(source, target), discriminator(source, generated.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        values["talker/gan_d"] = float(loss_d.detach())
        discriminator.requires_grad_(False)  # the generator's step leaves the critic alone
        gan_g = generator_hinge_loss(discriminator(source, generated))
        discriminator.requires_grad_(True)
        values["talker/gan_g"] = float(gan_g.detach())
    l2_position = position_l2(generated, target, talker.motion_std)
    l2_velocity = velocity_l2(generated, target, source, talker.velocity_std)
    values["talker/l2_position"] = float(l2_position.detach())
    values["talker/l2_velocity"] = float(l2_velocity.detach())
    loss = (config.weight_adversarial * gan_g + config.weight_position * l2_position
            + config.weight_velocity * l2_velocity)
    return generated, loss, values


def train_talker(clips: TalkerClips, syncers: Syncers, config: TalkerTrainConfig, log: Log = print,
                 logger: Any = None, model_config: TalkerModelConfig | None = None,
                 on_step: OnStep | None = None) -> tuple[Talker, dict[str, float]]:
    """Train the talker (teacher forcing, then free-running rollouts; see the module docstring).

    Metrics: ``talker/loss``, ``talker/sync`` (minus the mean syncer cosine: lower is
    better), ``talker/l2_position``, ``talker/l2_velocity``, ``talker/gan_g``,
    ``talker/gan_d``, ``talker/free_running`` (1 in the free-running phase).
    """
    with limited_threads(config.threads):
        return _train_talker(clips, syncers, config, log, logger, model_config, on_step)


def _train_talker(clips: TalkerClips, syncers: Syncers, config: TalkerTrainConfig, log: Log, logger: Any,
                  model_config: TalkerModelConfig | None, on_step: OnStep | None) -> tuple[Talker, dict[str, float]]:
    model_config = model_config or TalkerModelConfig(num_kp=syncers.config.num_kp, n_mels=syncers.config.n_mels,
                                                     audio_per_frame=syncers.config.audio_per_frame)
    try:
        check_compatible(model_config, syncers.config)
    except ValueError as exc:
        raise FommError(str(exc)) from None
    _check_clips(clips, model_config.kp_dim, model_config.n_mels, model_config.audio_per_frame)
    coarsest = syncers.config.window * 2 ** (syncers.config.levels - 1)
    if config.weight_sync > 0 and config.sequence_frames < coarsest:
        raise FommError(f"talker_train.sequence_frames ({config.sequence_frames}) is shorter than the coarsest "
                        f"syncer window ({coarsest} frames); raise it or lower syncer.levels")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    stats = clips.stats()
    talker = Talker(model_config)
    talker.set_stats(stats)
    discriminator = TemporalDiscriminator(model_config.kp_dim, config.disc_windows, config.disc_hidden)
    discriminator.set_stats(stats)
    judge = _frozen(syncers)
    betas = tuple(config.betas)
    opt_g = torch.optim.Adam(talker.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_discriminator, betas=betas)
    reporter = _Reporter("talker", config.steps, config.log_every, config.batch_size, log, logger, on_step)
    talker.train()
    discriminator.train()
    for step in range(1, config.steps + 1):
        batch = clips.sample_windows(config.batch_size, config.sequence_frames, rng)
        if step > config.teacher_forcing_steps:
            generated, loss, values = _free_running_losses(talker, discriminator, opt_d, batch, config)
        else:
            generated, loss, values = _teacher_forced_losses(talker, batch, config)
        if config.weight_sync > 0:
            sync = sync_loss(judge, generated, batch["audio"])
            values["talker/sync"] = float(sync.detach())
            loss = loss + config.weight_sync * sync
        values["talker/loss"] = float(loss.detach())
        if not all(np.isfinite(v) for v in values.values()):
            raise FommError(f"talker training diverged at step {step} ({values}); lower talker_train.lr")
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(talker.parameters(), config.grad_clip)
        opt_g.step()
        reporter.step(step, values, values)
    talker.eval()
    metrics = dict(reporter.last)
    metrics["talker/seconds"] = reporter.seconds()
    return talker, metrics
