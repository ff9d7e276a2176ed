"""The FOMM training loop: alternating generator/keypoint and discriminator updates.

Everything random is derived from ``(seed, epoch, index)`` or ``(seed, step, rank)``, and a
checkpoint holds models, optimizers, schedulers, position, RNG states and the logging
window, so a resumed run continues bit-for-bit on CPU (``resume.py`` decides when a
checkpoint may be continued). One optimizer step takes ``accumulate_steps`` micro-batches:
each micro-batch's losses are scaled by 1/k and their gradients add up before the update,
for the generator and detector as for the discriminator, which is the gradient of the
k-times larger batch (exactly so where no layer mixes samples: BatchNorm normalises each
micro-batch by its own statistics, as it does per GPU under DDP). Only rank 0 logs and
writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from ..atomic import write_text_atomic
from ..checkpoint import read_checkpoint, save_checkpoint
from ..config import to_mapping
from ..curves import LossCurve
from ..data import DatasetRepeater, FramePairDataset, resize_frames, seed_worker
from ..errors import FommError
from ..inference.device import resolve_precision
from ..losses import LossConfig, build_perceptual_loss, random_transform
from ..model_config import ModelConfig
from ..models import build_models
from ..progress import OnStep, StepReport, report_line
from . import distributed
from .config import TrainConfig
from .distributed import DistInfo
from .fingerprint import shards_fingerprint
from .frame_size import check_frame_size
from .full_model import DiscriminatorFullModel, GeneratorFullModel
from .logger import NullLogger, TrainingLogger
from .resume import ResumeMode, code_fingerprint, decide, run_identity
from .sampling import ResumableSampler, SeededItems, derive_seed
from .state import load_scheduler_state, rng_state, scheduler_state, set_rng_state
from .visualize import sample_grid

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "train_metrics.json"
CURVE_NAME = "train_losses.tsv"
FINAL_LOSS_WINDOW = 50  # final losses are averaged over this many last steps


class TrainingInterrupted(Exception):
    """A stop was requested (SIGTERM); the checkpoint at ``path`` holds the state at ``step``."""

    def __init__(self, step: int, path: Path | None):
        super().__init__(f"training stopped at step {step}")
        self.step = step
        self.path = path


@dataclass
class TrainResult:
    steps: int  # global step reached
    steps_this_run: int
    epochs_completed: int
    seconds: float
    samples_per_second: float
    final_losses: dict[str, float]
    checkpoint: Path | None
    step_losses: list[dict[str, float]] = field(default_factory=list)  # with keep_history, in order
    last_losses: dict[str, float] = field(default_factory=dict)


class LogWindow:
    """Sums of the losses since the last log point; logged as means, kept in checkpoints."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {name: total / self.count for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means

    def state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    def load(self, state: dict[str, Any]) -> None:
        self.sums, self.count = {k: float(v) for k, v in state["sums"].items()}, int(state["count"])


class Trainer:
    """Builds models, optimizers and data from the configs; :meth:`run` trains.

    ``logger`` receives metrics/images/artifacts and ``on_step`` a report per optimizer step,
    on rank 0 only. ``resume``: ``never`` starts fresh, ``auto`` continues ``out``'s checkpoint
    when it matches this run, ``require`` continues it or raises (see ``resume.decide``).
    ``dist_info`` and ``init_method`` select the DDP job (default: the ``torchrun`` environment).
    """

    def __init__(self, shards: str | os.PathLike, out: str | os.PathLike, model_config: ModelConfig,
                 loss_config: LossConfig, train_config: TrainConfig, *, logger: TrainingLogger | None = None,
                 dist_info: DistInfo | None = None, init_method: str | None = None, resume: ResumeMode = "never",
                 log=print, on_step: OnStep | None = None, keep_history: bool = False):
        check_frame_size(train_config.frame_size, model_config, loss_config)
        self.shards, self.out = Path(shards), Path(out)
        self.model_config, self.loss_config, self.config = model_config, loss_config, train_config
        self.info = dist_info or distributed.env_dist_info()
        self.logger: TrainingLogger = logger if (logger is not None and self.info.is_main) else NullLogger()
        self.log = log if self.info.is_main else (lambda *a, **k: None)
        self.on_step = on_step if self.info.is_main else None
        self._stop = False
        self.keep_history = keep_history
        cfg = train_config

        self.device = distributed.resolve_device(cfg.device, self.info)
        distributed.init_process_group(self.info, self.device, init_method)
        if cfg.amp == "auto":  # bf16 where the hardware computes it natively (CUDA, CPUs with AVX512-BF16/AMX)
            amp = "bf16" if resolve_precision("auto", self.device) == torch.bfloat16 else "none"
        else:
            amp = cfg.amp
        self.amp = amp
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=amp == "bf16")
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

        self._build_data()
        self._build_models()
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.recent: deque[dict[str, float]] = deque(maxlen=FINAL_LOSS_WINDOW)
        self.window = LogWindow()
        self.checkpoint_path = self.out / CHECKPOINT_NAME
        self.identity = run_identity(model_config, loss_config, train_config, self.shards_sha256, code_fingerprint())
        self.resumed = self._resume(resume)

    # ---------------------------------------------------------------- setup
    @property
    def samples_per_step(self) -> int:
        """Samples one process consumes per optimizer step."""
        return self.config.batch_size * self.config.accumulate_steps

    def _build_data(self) -> None:
        cfg = self.config
        base = FramePairDataset(self.shards, partition=cfg.partition, augment=cfg.augment, id_sampling=cfg.id_sampling,
                                max_open_shards=cfg.max_open_shards)
        self.shards_sha256 = shards_fingerprint(self.shards)
        self.dataset = SeededItems(DatasetRepeater(base, cfg.num_repeats), cfg.seed)
        self.sampler = ResumableSampler(self.dataset, self.info.world_size, self.info.rank, cfg.seed)
        self.steps_per_epoch = self.sampler.num_samples // self.samples_per_step
        if self.steps_per_epoch == 0:
            raise FommError(
                f"{self.shards}: {self.sampler.num_samples} training pairs per epoch per process, fewer than "
                f"train.batch_size x train.accumulate_steps = {self.samples_per_step}; raise train.num_repeats "
                "or lower train.batch_size / train.accumulate_steps")
        self.loader = DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.num_workers,
            drop_last=True, worker_init_fn=seed_worker, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=cfg.num_workers > 0,  # no re-fork (and index re-map) every epoch
        )

    def _build_models(self) -> None:
        cfg, losses = self.config, self.loss_config
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        kp_detector, generator, discriminator = build_models(self.model_config)
        self.use_gan = losses.generator_gan != 0
        perceptual = None
        if any(losses.perceptual):
            perceptual, self.vgg_info = build_perceptual_loss(losses, self.device)
        else:
            self.vgg_info = None
        fmt = self.memory_format
        self.kp_detector = kp_detector.to(self.device, memory_format=fmt)
        self.generator = generator.to(self.device, memory_format=fmt)
        self.discriminator = discriminator.to(self.device, memory_format=fmt) if self.use_gan else None
        if perceptual is not None:
            perceptual = perceptual.to(memory_format=fmt)
        full = GeneratorFullModel(self.kp_detector, self.generator, perceptual, losses).to(self.device)
        self.generator_step = distributed.wrap_ddp(full, self.device, self.info)
        self.discriminator_step = None
        if self.use_gan:
            self.discriminator_step = distributed.wrap_ddp(
                DiscriminatorFullModel(self.discriminator, losses), self.device, self.info)
        if cfg.compile:
            self.generator_step = torch.compile(self.generator_step)
            if self.discriminator_step is not None:
                self.discriminator_step = torch.compile(self.discriminator_step)

        betas = tuple(cfg.betas)
        self.optimizers = {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_generator, betas=betas),
            "kp_detector": torch.optim.Adam(self.kp_detector.parameters(), lr=cfg.lr_kp_detector, betas=betas),
        }
        if self.use_gan:
            self.optimizers["discriminator"] = torch.optim.Adam(
                self.discriminator.parameters(), lr=cfg.lr_discriminator, betas=betas)
        self.schedulers = {
            name: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.scheduler_milestones),
                                                       gamma=cfg.scheduler_gamma)
            for name, opt in self.optimizers.items()
        }

    def models(self) -> dict[str, torch.nn.Module]:
        models = {"kp_detector": self.kp_detector, "generator": self.generator}
        if self.discriminator is not None:
            models["discriminator"] = self.discriminator
        return models

    # ---------------------------------------------------------------- checkpoints
    def save(self, path: Path | None = None) -> Path:
        path = path or self.checkpoint_path
        save_checkpoint(path, model_config=self.model_config, models=self.models(), extra={
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: scheduler_state(v) for k, v in self.schedulers.items()},
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
            "rng": rng_state(),
            "train_config": to_mapping(self.config), "loss_config": to_mapping(self.loss_config),
            "world_size": self.info.world_size,
            "run_identity": self.identity,
            "recent_losses": list(self.recent), "log_window": self.window.state(),
        })
        return path

    def _resume(self, mode: ResumeMode) -> bool:
        """Load the checkpoint in ``out`` when ``mode`` and ``resume.decide`` say so."""
        path = self.checkpoint_path
        state = read_checkpoint(path) if mode != "never" and path.exists() else None
        decision = decide(state, path, self.identity, self.info.world_size, self.total_steps, mode)
        if decision.resume:
            self._load(state, path)
        self.log(decision.note)
        return decision.resume

    def _load(self, state: dict[str, Any], path: Path) -> None:
        for name, module in self.models().items():
            if name not in state:
                raise FommError(f"{path}: checkpoint has no {name} weights (was losses.generator_gan changed?)")
            module.load_state_dict(state[name])
        for name, opt in self.optimizers.items():
            if name not in state.get("optimizers", {}):
                raise FommError(f"{path}: checkpoint has no {name} optimizer state; cannot resume exactly")
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            load_scheduler_state(sched, state["schedulers"][name])
        self.epoch, self.batch_in_epoch, self.step = int(state["epoch"]), int(state["batch_in_epoch"]), int(state["step"])
        self.recent.extend(state["recent_losses"])
        self.window.load(state["log_window"])
        set_rng_state(state["rng"])

    # ---------------------------------------------------------------- one optimizer step
    def request_stop(self) -> None:
        """Ask the loop to checkpoint and stop after the current step (signal-handler safe)."""
        self._stop = True

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(self.device, non_blocking=True)
        if frames.dtype == torch.uint8:
            frames = frames.float().div_(255.0)
        return resize_frames(frames, self.config.frame_size).contiguous(memory_format=self.memory_format)

    def _check_finite(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            if not math.isfinite(value):
                raise FommError(
                    f"step {self.step}: loss '{name}' is {value}; training diverged. Lower the learning rates "
                    f"(train.lr_*), check the input frames, or resume from the last good checkpoint")

    def _transform(self, batch_size: int):
        """The equivariance warps of one step's samples (all micro-batches), drawn from (seed, step, rank)."""
        cfg = self.loss_config
        if not (cfg.equivariance_value or cfg.equivariance_jacobian):
            return None
        gen = torch.Generator().manual_seed(derive_seed(self.config.seed, self.step, self.info.rank))
        return random_transform(cfg, batch_size, generator=gen, device=self.device)

    def train_step(self, micro_batches: Sequence[dict]) -> tuple[dict[str, float], dict]:
        """One generator+detector update and, with the GAN on, one discriminator update, over
        ``micro_batches`` (the step's ``accumulate_steps`` batches, in order).

        Returns the losses (means over the micro-batches and ranks) and the last micro-batch's
        outputs. Nothing is updated when a loss is not finite.
        """
        count = len(micro_batches)
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        transform = self._transform(sum(batch["source"].shape[0] for batch in micro_batches))
        sums: dict[str, torch.Tensor] = {}
        first = 0
        for index, batch in enumerate(micro_batches):
            source, driving = self._prepare(batch["source"]), self._prepare(batch["driving"])
            rows = transform.rows(first, first + source.shape[0]) if transform is not None else None
            first += source.shape[0]
            sync = index == count - 1  # DDP all-reduces the summed gradients once, on the last micro-batch
            if self.discriminator is not None:
                self.discriminator.requires_grad_(False)  # the generator's losses only read it
            with distributed.gradient_sync(self.generator_step, sync):
                with torch.autocast(**self.autocast):
                    losses, out = self.generator_step(source, driving, rows, self.discriminator)
                (sum(losses.values()) / count).backward()
            if self.discriminator_step is not None:
                self.discriminator.requires_grad_(True)
                with distributed.gradient_sync(self.discriminator_step, sync):
                    with torch.autocast(**self.autocast):
                        disc_losses = self.discriminator_step(out["prediction"].detach(), driving, out["kp_driving"])
                    (sum(disc_losses.values()) / count).backward()
                losses = {**losses, **disc_losses}
            for name, value in losses.items():
                sums[name] = sums.get(name, 0) + value.detach().float()
        result = self._mean_over_ranks(sums, count)
        self._check_finite(result)
        for optimizer in self.optimizers.values():
            optimizer.step()
        result["total"] = sum(v for k, v in result.items() if k != "discriminator_gan")
        out["source"], out["driving"] = source, driving
        return result, out

    def _mean_over_ranks(self, sums: dict[str, torch.Tensor], micro_batches: int) -> dict[str, float]:
        """Per-loss means over micro-batches and ranks, in one small collective."""
        names = list(sums)
        totals = distributed.all_reduce_sum(torch.stack([sums[name] for name in names]), self.info)
        return dict(zip(names, (totals / (micro_batches * self.info.world_size)).tolist()))

    # ---------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        cfg = self.config
        for module in (self.generator_step, self.discriminator_step):
            if module is not None:
                module.train()
        self._run_start = (self.step, time.perf_counter())
        self._last_log = self._run_start
        self._saved_at = self.step if self.resumed else None
        self._history: list[dict[str, float]] = []
        self._open_curve()
        if self._finished():
            self.log(f"nothing to train: the checkpoint is at step {self.step} of {self.total_steps}")
        else:
            self.log(
                f"training on {self.device} ({self.info.world_size} process(es)): {self.steps_per_epoch} steps/epoch, "
                f"epochs {self.epoch}..{cfg.epochs - 1}, batch {cfg.batch_size} x {cfg.accumulate_steps} "
                f"micro-batch(es) per process, step {self.step} of {self.total_steps}", flush=True)
        try:
            while not self._finished():
                self._run_epoch()
        finally:
            if self.curve is not None:
                self.curve.close()
        return self._finish()

    def _finished(self) -> bool:
        return self.epoch >= self.config.epochs or self.step >= self.total_steps

    def _run_epoch(self) -> None:
        """The rest of the current epoch (from ``batch_in_epoch``), or up to ``total_steps``."""
        self.sampler.set_position(self.epoch, self.batch_in_epoch * self.samples_per_step)
        self.dataset.set_epoch(self.epoch)
        micro_batches = iter(self.loader)
        while self.batch_in_epoch < self.steps_per_epoch:
            if self._finished():
                return  # stopped mid-epoch by max_steps: the checkpoint resumes inside this epoch
            group = [next(micro_batches) for _ in range(self.config.accumulate_steps)]
            self.step += 1
            self.batch_in_epoch += 1
            losses, out = self.train_step(group)
            self._report(losses, out)
            if distributed.any_rank(self._stop, self.info):
                saved = self.save() if self.info.is_main else None
                distributed.barrier(self.info)
                raise TrainingInterrupted(self.step, saved)
        self.epoch += 1
        self.batch_in_epoch = 0
        for scheduler in self.schedulers.values():
            scheduler.step()
        if self.info.is_main and (self.epoch % self.config.checkpoint_every == 0 or self._finished()):
            self.save()
            self._saved_at = self.step

    def _open_curve(self) -> None:
        """``train_losses.tsv`` (rank 0): continued after a resume, otherwise started anew."""
        self.curve = LossCurve(self.out / CURVE_NAME) if self.info.is_main else None
        if self.curve is None:
            return
        note = self.curve.resume(self.step) if self.resumed else self.curve.start()
        if note:
            self.log(note)

    def _report(self, losses: dict[str, float], out: dict) -> None:
        """Every step: history, progress callback; every ``log_every`` and at the last step: metrics
        and a curve row; images."""
        cfg = self.config
        self.recent.append(losses)
        if self.keep_history:
            self._history.append(losses)
        self.window.add(losses)
        global_batch = self.samples_per_step * self.info.world_size
        now = time.perf_counter()
        first_step, started = self._run_start
        logged = None
        if self.step % cfg.log_every == 0 or self.step == self.total_steps:  # every run ends with a row
            logged = self.window.pop()
            last_step, last_time = self._last_log
            metrics = {f"loss/{k}": v for k, v in logged.items()}
            metrics.update({f"lr/{k}": opt.param_groups[0]["lr"] for k, opt in self.optimizers.items()})
            metrics["throughput/samples_per_second"] = (self.step - last_step) * global_batch / max(now - last_time, 1e-9)
            metrics["epoch"] = float(self.epoch)
            self.logger.log_metrics(metrics, self.step)
            self._last_log = (self.step, now)
            if self.curve is not None:
                self.curve.append(self.step, logged)
        if self.info.is_main and (self.step % cfg.image_log_every == 0 or self.step == first_step + 1):
            with torch.no_grad():
                self.logger.log_image("samples", sample_grid(out["source"], out["driving"], out), self.step)
        report = StepReport(self.step, self.total_steps, losses,
                            (self.step - first_step) * global_batch / max(now - started, 1e-9), logged)
        if self.on_step is not None:
            self.on_step(report)
        elif logged is not None:
            self.log(report_line("train", report))

    def _finish(self) -> TrainResult:
        distributed.broadcast_buffers(self.models().values(), self.info)
        if self.info.is_main and self._saved_at != self.step:
            self.save()
        distributed.barrier(self.info)
        first_step, started = self._run_start
        seconds = time.perf_counter() - started
        steps = self.step - first_step
        global_batch = self.samples_per_step * self.info.world_size
        recent = self.recent
        final = {k: sum(d[k] for d in recent) / len(recent) for k in (recent[0] if recent else {})}
        result = TrainResult(
            steps=self.step, steps_this_run=steps, epochs_completed=self.epoch, seconds=seconds,
            samples_per_second=steps * global_batch / seconds if seconds > 0 else 0.0,
            final_losses=final, last_losses=dict(recent[-1]) if recent else {},
            checkpoint=self.checkpoint_path if self.info.is_main else None, step_losses=self._history,
        )
        if self.info.is_main:
            self.write_metrics(result)
        return result

    def write_metrics(self, result: TrainResult) -> Path:
        path = self.out / METRICS_NAME
        payload: dict[str, Any] = {
            "steps": result.steps, "steps_this_run": result.steps_this_run,
            "epochs_completed": result.epochs_completed, "seconds": round(result.seconds, 3),
            "samples_per_second": round(result.samples_per_second, 4),
            "batch_size": self.config.batch_size, "accumulate_steps": self.config.accumulate_steps,
            "world_size": self.info.world_size, "amp": self.amp,
            "perceptual_backbone": self.vgg_info.backbone if self.vgg_info is not None else "none",
            "perceptual_weights_source": self.vgg_info.source if self.vgg_info is not None else "none",
            "losses": {k: round(v, 6) for k, v in result.final_losses.items()},
            "last_step_losses": {k: round(v, 6) for k, v in result.last_losses.items()},
        }
        write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
        return path

    def close(self) -> None:
        distributed.destroy_process_group()
