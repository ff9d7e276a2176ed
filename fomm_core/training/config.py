"""Training settings (the ``train`` section of params.yaml); defaults are FOMM's vox-256 schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..data.augment import AugmentConfig


@dataclass
class TrainConfig:
    """How long, how fast and on what to train.

    One epoch is ``num_repeats`` passes over the training set (one item per identity with
    ``id_sampling``); learning rates drop by ``scheduler_gamma`` at each epoch listed in
    ``scheduler_milestones``. ``amp: auto`` uses bf16 autocast where the hardware has native
    bf16 (CUDA; CPUs with AVX512-BF16 or AMX, where a step is about 1.8x faster) and fp32
    elsewhere; ``none`` forces fp32.
    """

    epochs: int = 100
    num_repeats: int = 75
    batch_size: int = 40
    lr_generator: float = 2.0e-4
    lr_discriminator: float = 2.0e-4
    lr_kp_detector: float = 2.0e-4
    betas: tuple[float, float] = (0.5, 0.999)
    scheduler_milestones: list[int] = field(default_factory=lambda: [60, 90])
    scheduler_gamma: float = 0.1
    num_workers: int = 2
    max_open_shards: int = 64  # shard files each loader process keeps open (LRU); x workers x ranks
    seed: int = 0
    frame_size: int = 256  # frames are resized (antialiased) when the shards hold another size
    partition: str = "train"
    id_sampling: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "none"] = "auto"
    compile: bool = False
    channels_last: bool = True
    checkpoint_every: int = 1  # epochs
    log_every: int = 1  # steps between metric logs
    image_log_every: int = 100  # steps between sample grids
    max_steps: Optional[int] = None  # stop after this many steps in total (tests, smoke runs)
    # Gradient accumulation: one optimizer step per accumulate_steps micro-batches of batch_size,
    # so a process sees batch_size * accumulate_steps samples per step (the paper's 40 on one GPU).
    accumulate_steps: int = 1
    # Processes on this machine: 1 = this process; N > 1 = `fomm train` restarts itself under
    # `torchrun --standalone --nproc-per-node N` (one per GPU, gloo on CPU); 0 = one per visible GPU.
    nproc_per_node: int = 1

    def validate(self) -> None:
        for name in ("epochs", "num_repeats", "batch_size", "frame_size", "checkpoint_every",
                     "log_every", "image_log_every", "accumulate_steps", "max_open_shards"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_generator", "lr_discriminator", "lr_kp_detector"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {list(self.betas)}")
        if not 0 < self.scheduler_gamma <= 1:
            raise ValueError(f"scheduler_gamma must be in (0, 1], got {self.scheduler_gamma}")
        if any(m < 1 for m in self.scheduler_milestones) or list(self.scheduler_milestones) != sorted(
                set(self.scheduler_milestones)):
            raise ValueError(f"scheduler_milestones must be increasing epochs >= 1, got {self.scheduler_milestones}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.nproc_per_node < 0:
            raise ValueError(f"nproc_per_node must be >= 0 (0 = one process per visible GPU), got {self.nproc_per_node}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1 (or null for no cap), got {self.max_steps}")
