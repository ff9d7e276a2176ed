"""The FOMM training loop: alternating generator/keypoint and discriminator updates.

Everything random is derived from ``(seed, epoch, index)`` or ``(seed, step, rank)``, and a
checkpoint holds models, optimizers, schedulers, position and RNG states, so ``resume``
continues bit-for-bit on CPU. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..atomic import write_text_atomic
from ..checkpoint import checkpoint_model_config, init_models_from, read_checkpoint, save_checkpoint
from ..config import to_mapping
from ..data import DatasetRepeater, FramePairDataset, resize_frames, seed_worker
from ..errors import FommError
from ..inference.device import resolve_precision
from ..losses import LossConfig, build_perceptual_loss, random_transform
from ..model_config import ModelConfig
from ..models import build_models
from . import distributed
from .config import TrainConfig
from .distributed import DistInfo
from .full_model import DiscriminatorFullModel, GeneratorFullModel
from .logger import NullLogger, TrainingLogger
from .sampling import ResumableSampler, SeededItems, derive_seed
from .state import load_scheduler_state, rng_state, scheduler_state, set_rng_state
from .visualize import sample_grid

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "train_metrics.json"
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


class Trainer:
    """Builds models, optimizers and data from the configs; :meth:`run` trains.

    ``logger`` receives metrics/images/artifacts on rank 0 only. ``dist_info`` and
    ``init_method`` select the DDP job (default: from the ``torchrun`` environment).
    """

    def __init__(self, shards: str | os.PathLike, out: str | os.PathLike, model_config: ModelConfig,
                 loss_config: LossConfig, train_config: TrainConfig, *, logger: TrainingLogger | None = None,
                 dist_info: DistInfo | None = None, init_method: str | None = None, resume: bool = False,
                 log=print, keep_history: bool = False):
        self.shards, self.out = Path(shards), Path(out)
        self.model_config, self.loss_config, self.config = model_config, loss_config, train_config
        self.info = dist_info or distributed.env_dist_info()
        self.logger: TrainingLogger = logger if (logger is not None and self.info.is_main) else NullLogger()
        self.log = log if self.info.is_main else (lambda *a, **k: None)
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
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.checkpoint_path = self.out / CHECKPOINT_NAME
        if resume:
            if self.checkpoint_path.exists():
                self._load(self.checkpoint_path)
                self.log(f"resuming from {self.checkpoint_path}: epoch {self.epoch}, step {self.step}")
            else:
                self.log(f"no checkpoint at {self.checkpoint_path}; starting from scratch")
        if train_config.init_from and self.step == 0:  # a resumed run continues from its own checkpoint instead
            self.log(f"fine-tuning: {init_models_from(train_config.init_from, self.models(), model_config)}")

    # ---------------------------------------------------------------- setup
    def _build_data(self) -> None:
        cfg = self.config
        base = FramePairDataset(self.shards, partition=cfg.partition, augment=cfg.augment, id_sampling=cfg.id_sampling)
        self.dataset = SeededItems(DatasetRepeater(base, cfg.num_repeats), cfg.seed)
        self.sampler = ResumableSampler(self.dataset, self.info.world_size, self.info.rank, cfg.seed)
        self.steps_per_epoch = self.sampler.num_samples // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise FommError(
                f"{self.shards}: {self.sampler.num_samples} training pairs per epoch per process, fewer than "
                f"train.batch_size={cfg.batch_size}; raise train.num_repeats or lower train.batch_size")
        self.loader = DataLoader(
            self.dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.num_workers,
            drop_last=True, worker_init_fn=seed_worker, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed),
            persistent_workers=False,
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
        })
        return path

    def _load(self, path: Path) -> None:
        state = read_checkpoint(path)
        saved = checkpoint_model_config(state, path)
        if to_mapping(saved) != to_mapping(self.model_config):
            raise FommError(f"{path}: saved with a different model config; resume with the same `model` "
                            "params or train into a new --out folder")
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
        set_rng_state(state["rng"])

    # ---------------------------------------------------------------- training
    def request_stop(self) -> None:
        """Ask the loop to checkpoint and stop after the current step (signal-handler safe)."""
        self._stop = True

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames.to(self.device, non_blocking=True)
        if frames.dtype == torch.uint8:
            frames = frames.float().div_(255.0)
        return resize_frames(frames, self.config.frame_size).contiguous(memory_format=self.memory_format)

    def _reduced(self, values: list[torch.Tensor], extra: float = 0.0) -> list[float]:
        """Losses averaged over ranks (plus a summed flag), one small collective per call."""
        vec = torch.stack([v.detach().float() for v in values] + [torch.tensor(extra, device=self.device)])
        vec = distributed.all_reduce_sum(vec, self.info)
        values_out = (vec[:-1] / self.info.world_size).tolist()
        return values_out + [float(vec[-1])]

    def _check_finite(self, names: list[str], values: list[float]) -> None:
        for name, value in zip(names, values):
            if not math.isfinite(value):
                raise FommError(
                    f"step {self.step}: loss '{name}' is {value}; training diverged. Lower the learning rates "
                    f"(train.lr_*), check the input frames, or resume from the last good checkpoint")

    def _transform(self, batch_size: int):
        cfg = self.loss_config
        if not (cfg.equivariance_value or cfg.equivariance_jacobian):
            return None
        gen = torch.Generator().manual_seed(derive_seed(self.config.seed, self.step, self.info.rank))
        return random_transform(cfg, batch_size, generator=gen, device=self.device)

    def train_step(self, batch: dict) -> tuple[dict[str, float], dict]:
        """One generator+detector update and, with the GAN on, one discriminator update."""
        source, driving = self._prepare(batch["source"]), self._prepare(batch["driving"])
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
        with torch.autocast(**self.autocast):
            losses, out = self.generator_step(source, driving, self._transform(source.shape[0]), self.discriminator)
        names = list(losses)
        reduced = self._reduced([losses[n] for n in names], extra=float(self._stop))
        self._check_finite(names, reduced[:-1])
        stop = reduced[-1] > 0
        total = sum(losses.values())
        for name in ("generator", "kp_detector"):
            self.optimizers[name].zero_grad(set_to_none=True)
        total.backward()
        self.optimizers["generator"].step()
        self.optimizers["kp_detector"].step()
        result = dict(zip(names, reduced[:-1]))
        if self.discriminator_step is not None:
            self.discriminator.requires_grad_(True)
            with torch.autocast(**self.autocast):
                disc_losses = self.discriminator_step(out["prediction"].detach(), driving, out["kp_driving"])
            d_names = list(disc_losses)
            d_reduced = self._reduced([disc_losses[n] for n in d_names])[:-1]
            self._check_finite(d_names, d_reduced)
            self.optimizers["discriminator"].zero_grad(set_to_none=True)
            sum(disc_losses.values()).backward()
            self.optimizers["discriminator"].step()
            result.update(zip(d_names, d_reduced))
        result["total"] = sum(v for k, v in result.items() if k != "discriminator_gan")
        self._stop = self._stop or stop
        out["source"], out["driving"] = source, driving
        return result, out

    def _log_step(self, losses: dict[str, float], samples_per_second: float) -> None:
        metrics = {f"loss/{k}": v for k, v in losses.items()}
        metrics.update({f"lr/{k}": opt.param_groups[0]["lr"] for k, opt in self.optimizers.items()})
        metrics["throughput/samples_per_second"] = samples_per_second
        metrics["epoch"] = float(self.epoch)
        self.logger.log_metrics(metrics, self.step)

    def run(self) -> TrainResult:
        cfg = self.config
        for module in (self.generator_step, self.discriminator_step):
            if module is not None:
                module.train()
        start_step, started = self.step, time.perf_counter()
        global_batch = cfg.batch_size * self.info.world_size
        recent: deque[dict[str, float]] = deque(maxlen=FINAL_LOSS_WINDOW)
        history: list[dict[str, float]] = []
        saved_at = None
        last_log_time, last_log_step = started, self.step
        self.log(
            f"training on {self.device} ({self.info.world_size} process(es)): {self.steps_per_epoch} steps/epoch, "
            f"epochs {self.epoch}..{cfg.epochs - 1}, batch {cfg.batch_size} per process, step {self.step}",
            flush=True)
        done = self.epoch >= cfg.epochs or (cfg.max_steps is not None and self.step >= cfg.max_steps)
        while not done:
            self.sampler.set_position(self.epoch, self.batch_in_epoch * cfg.batch_size)
            self.dataset.set_epoch(self.epoch)
            for batch in self.loader:
                self.step += 1
                self.batch_in_epoch += 1
                losses, out = self.train_step(batch)
                recent.append(losses)
                if self.keep_history:
                    history.append(losses)
                if self.step % cfg.log_every == 0:
                    now = time.perf_counter()
                    rate = (self.step - last_log_step) * global_batch / max(now - last_log_time, 1e-9)
                    last_log_time, last_log_step = now, self.step
                    self._log_step(losses, rate)
                if self.info.is_main and (self.step % cfg.image_log_every == 0 or self.step == start_step + 1):
                    with torch.no_grad():
                        self.logger.log_image("samples", sample_grid(out["source"], out["driving"], out), self.step)
                if self._stop:
                    saved = self.save() if self.info.is_main else None
                    distributed.barrier(self.info)
                    raise TrainingInterrupted(self.step, saved)
                if cfg.max_steps is not None and self.step >= cfg.max_steps:
                    done = True
                    break
            if done and self.batch_in_epoch < self.steps_per_epoch:
                break  # stopped mid-epoch by max_steps: the checkpoint resumes inside this epoch
            self.epoch += 1
            self.batch_in_epoch = 0
            for scheduler in self.schedulers.values():
                scheduler.step()
            if self.epoch >= cfg.epochs:
                done = True
            if self.info.is_main and (self.epoch % cfg.checkpoint_every == 0 or done):
                self.save()
                saved_at = self.step
        distributed.broadcast_buffers(self.models().values(), self.info)
        if self.info.is_main and saved_at != self.step:
            self.save()
        distributed.barrier(self.info)
        seconds = time.perf_counter() - started
        steps = self.step - start_step
        final = {k: sum(d[k] for d in recent) / len(recent) for k in (recent[0] if recent else {})}
        result = TrainResult(
            steps=self.step, steps_this_run=steps, epochs_completed=self.epoch, seconds=seconds,
            samples_per_second=steps * global_batch / seconds if seconds > 0 else 0.0,
            final_losses=final, last_losses=dict(recent[-1]) if recent else {}, checkpoint=self.checkpoint_path if self.info.is_main else None, step_losses=history,
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
            "batch_size": self.config.batch_size, "world_size": self.info.world_size, "amp": self.amp,
            "perceptual_backbone": self.vgg_info.backbone if self.vgg_info is not None else "none",
            "perceptual_weights_source": self.vgg_info.source if self.vgg_info is not None else "none",
            "losses": {k: round(v, 6) for k, v in result.final_losses.items()},
            "last_step_losses": {k: round(v, 6) for k, v in result.last_losses.items()},
        }
        write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
        return path

    def close(self) -> None:
        distributed.destroy_process_group()


@contextlib.contextmanager
def trainer_session(*args, **kwargs):
    """A :class:`Trainer` whose process group is torn down afterwards."""
    trainer = Trainer(*args, **kwargs)
    try:
        yield trainer
    finally:
        trainer.close()
