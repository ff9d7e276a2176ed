"""Typed settings of the audio-driven talker (params.yaml sections ``talker_fomm``,
``talker_model``, ``syncer``, ``talker_train`` and ``talker_eval``).

The defaults are a small profile for the embedded synthetic set on 2 CPU cores: the
syncers and the talker train in a few minutes. The paper-sized model is obtained by raising
widths, layers and steps; nothing in the code depends on these particular values.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _check_min(minimum: float, **values: float) -> None:
    for name, value in values.items():
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _check_power_of_two(name: str, value: int) -> None:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two (1, 2, 4, ...), got {value}")


def _check_betas(betas: tuple[float, float]) -> None:
    if not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be in [0, 1), got {list(betas)}")


@dataclass
class TalkerFommConfig:
    """The FOMM checkpoint the talker is built on.

    Its detector gives the keypoints the syncers and the talker learn, its generator
    renders them in ``fomm talk``: this pipeline's trained checkpoint by default, or an
    imported published one (``fomm import-checkpoint``; vox-adv-256 as in MS-Sync).
    """

    checkpoint: str = "artifacts/train/checkpoint.pt"

    def validate(self) -> None:
        if not self.checkpoint.strip():
            raise ValueError("checkpoint must name a FOMM checkpoint file, e.g. artifacts/train/checkpoint.pt")


@dataclass
class TalkerModelConfig:
    """The autoregressive speech-to-keypoints generator and its causal audio encoder.

    A frame is ``num_kp * 6`` values (positions, then 2x2 Jacobians); ``audio_per_frame``
    log-mel frames (100 Hz) belong to each video frame (25 fps) and the audio encoder's
    strided convolutions divide by exactly that. ``levels`` audio pyramid levels (25, 12.5,
    6.25, 3.125 Hz at 4) each feed one velocity branch; an audio-free branch is added.
    ``context`` is how many past keypoint frames the transformer attends to.
    """

    num_kp: int = 10
    n_mels: int = 26
    audio_per_frame: int = 4
    levels: int = 4
    audio_channels: int = 48
    dim: int = 64
    layers: int = 2
    heads: int = 4
    context: int = 25
    branch_hidden: int = 64

    @property
    def kp_dim(self) -> int:
        return self.num_kp * 6

    def validate(self) -> None:
        _check_min(1, num_kp=self.num_kp, n_mels=self.n_mels, levels=self.levels, layers=self.layers,
                   heads=self.heads, context=self.context, audio_channels=self.audio_channels,
                   branch_hidden=self.branch_hidden)
        _check_power_of_two("audio_per_frame", self.audio_per_frame)
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")


@dataclass
class SyncerConfig:
    """Contrastive keypoint/audio syncers, one pair of encoders per pyramid level.

    A keypoint window is ``window`` frames, its audio window ``window * audio_per_frame``
    log-mel frames at the same level; the pyramid (moving average of ``pyramid_kernel``,
    then every second step) makes a 5-frame window span 0.2, 0.4, 0.8, 1.6 s. Each training
    sample is ``candidates`` consecutive window positions of one clip: the aligned pairs are
    the positives, every other offset of the same clip a negative (symmetric InfoNCE).
    """

    num_kp: int = 10
    n_mels: int = 26
    audio_per_frame: int = 4
    levels: int = 4
    window: int = 5
    pyramid_kernel: int = 7
    hidden: int = 64
    embed_dim: int = 32
    temperature: float = 0.1
    candidates: int = 12
    lr: float = 1.0e-3
    betas: tuple[float, float] = (0.9, 0.999)
    steps: int = 400
    batch_size: int = 24
    seed: int = 0
    log_every: int = 50
    threads: int = 1  # torch threads while training (0 = leave as is); see fomm_core.talker.threads

    @property
    def kp_dim(self) -> int:
        return self.num_kp * 6

    @property
    def audio_window(self) -> int:
        return self.window * self.audio_per_frame

    def validate(self) -> None:
        _check_min(1, num_kp=self.num_kp, n_mels=self.n_mels, levels=self.levels, hidden=self.hidden,
                   embed_dim=self.embed_dim, steps=self.steps, batch_size=self.batch_size,
                   log_every=self.log_every)
        _check_min(2, window=self.window, candidates=self.candidates)
        _check_power_of_two("audio_per_frame", self.audio_per_frame)
        if self.pyramid_kernel < 1 or self.pyramid_kernel % 2 == 0:
            raise ValueError(f"pyramid_kernel must be odd and positive, got {self.pyramid_kernel}")
        _check_positive(temperature=self.temperature, lr=self.lr)
        _check_betas(self.betas)
        _check_min(0, threads=self.threads)


@dataclass
class TalkerTrainConfig:
    """How the talker is trained (see :func:`fomm_core.talker.training.train_talker`).

    The first ``teacher_forcing_steps`` steps predict every frame's velocity from the
    ground-truth history in one parallel pass (L2 on velocities only); the remaining steps
    roll the model out freely from the source keypoints over ``sequence_frames`` frames and
    add the adversarial and multi-scale sync losses. ``sequence_frames`` must cover the
    coarsest syncer level (``window * 2**(levels-1)`` frames, 40 at the defaults).
    """

    steps: int = 500
    teacher_forcing_steps: int = 150
    batch_size: int = 16
    sequence_frames: int = 48
    lr: float = 1.0e-3
    lr_discriminator: float = 1.0e-3
    betas: tuple[float, float] = (0.5, 0.999)
    weight_adversarial: float = 0.05
    weight_sync: float = 1.0
    weight_position: float = 0.05
    weight_velocity: float = 0.5
    disc_windows: list[int] = field(default_factory=lambda: [5, 10, 20, 40])
    disc_hidden: int = 64
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    threads: int = 1  # torch threads while training (0 = leave as is); see fomm_core.talker.threads

    def validate(self) -> None:
        _check_min(1, steps=self.steps, batch_size=self.batch_size, sequence_frames=self.sequence_frames,
                   disc_hidden=self.disc_hidden, log_every=self.log_every)
        _check_min(0, threads=self.threads, teacher_forcing_steps=self.teacher_forcing_steps,
                   weight_adversarial=self.weight_adversarial,
                   weight_sync=self.weight_sync, weight_position=self.weight_position,
                   weight_velocity=self.weight_velocity)
        _check_positive(lr=self.lr, lr_discriminator=self.lr_discriminator, grad_clip=self.grad_clip)
        _check_betas(self.betas)
        if not self.disc_windows or any(w < 2 for w in self.disc_windows):
            raise ValueError(f"disc_windows must be a non-empty list of window lengths >= 2, got {self.disc_windows}")
        if max(self.disc_windows) > self.sequence_frames:
            raise ValueError(f"disc_windows {self.disc_windows} must fit in sequence_frames ({self.sequence_frames})")


@dataclass
class TalkerEvalConfig:
    """Evaluation on the test clips.

    LSE-style scores use the level-``sync_level`` syncer over offsets in
    ``[-max_offset, max_offset]`` frames; the mouth probe is a ridge regression fitted on
    the training clips' ground-truth keypoints, ``ridge_alpha`` relative to standardised
    features. Test clips are generated in chunks of ``chunk_frames`` frames (as ``fomm
    talk`` does).
    """

    max_offset: int = 15
    sync_level: int = 0
    ridge_alpha: float = 0.01
    chunk_frames: int = 100
    max_clips: int = 0  # 0 = every test clip
    threads: int = 1  # torch threads while generating (0 = leave as is)

    def validate(self) -> None:
        _check_min(1, max_offset=self.max_offset, chunk_frames=self.chunk_frames)
        _check_min(0, sync_level=self.sync_level, max_clips=self.max_clips, threads=self.threads)
        _check_positive(ridge_alpha=self.ridge_alpha)


def check_compatible(model: TalkerModelConfig, syncer: SyncerConfig) -> None:
    """The talker and its syncers must agree on the frame layout and audio rate."""
    for name in ("num_kp", "n_mels", "audio_per_frame"):
        if getattr(model, name) != getattr(syncer, name):
            raise ValueError(f"talker_model.{name} ({getattr(model, name)}) differs from syncer.{name} "
                             f"({getattr(syncer, name)}); use the same value in both sections")
