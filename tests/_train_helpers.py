"""Shared pieces of the training and tracking tests: tiny shards made by the real stages, tiny configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from fomm_core.data import AugmentConfig
from fomm_core.losses import LossConfig
from fomm_core.model_config import (
    DenseMotionConfig, DiscriminatorConfig, GeneratorConfig, KeypointDetectorConfig, ModelConfig, small_model_config,
)
from fomm_core.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
FRAME = 64

DATA_PARAMS = {
    "synth": {"identities": 3, "test_identities": 1, "videos_per_identity": 1, "clips_per_video": 1,
              "min_clip_seconds": 1.4, "max_clip_seconds": 1.6, "gap_seconds": 0.3, "lead_seconds": 0.2},
    "download": {"allow_file_urls": True},
    "crop": {"size": FRAME},
}


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")


def cli(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          env=kwargs.pop("env", env()), **kwargs)


def build_shards(base: Path) -> Path:
    """Run synth → shard on a 3-identity, 64 px config once per session (reused when present)."""
    project = base / "train_data"
    shards = project / "artifacts" / "shards"
    if (shards / "index.parquet").exists():
        return shards
    project.mkdir(parents=True, exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(DATA_PARAMS))
    for stage in ("synth", "metadata", "download", "crop", "shard"):
        result = cli([stage], project)
        assert result.returncode == 0, f"{stage}: {result.stderr}"
    return shards


def tiny_model() -> ModelConfig:
    base = small_model_config()
    return ModelConfig(
        num_kp=5,
        kp=KeypointDetectorConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=base.kp.scale_factor),
        generator=GeneratorConfig(block_expansion=8, max_features=32, num_down_blocks=2, num_bottleneck_blocks=1,
                                  dense_motion=DenseMotionConfig(block_expansion=8, max_features=32, num_blocks=3)),
        discriminator=DiscriminatorConfig(block_expansion=8, max_features=32, num_blocks=4),
    )


def tiny_losses(gan: float = 0.0) -> LossConfig:
    return LossConfig(perceptual_backbone="random", scales=[1.0], generator_gan=gan)


def tiny_train(**overrides) -> TrainConfig:
    settings = dict(epochs=3, num_repeats=2, batch_size=2, num_workers=0, frame_size=FRAME, device="cpu", amp="none",
                    scheduler_milestones=[1], image_log_every=2, augment=AugmentConfig())
    settings.update(overrides)
    return TrainConfig(**settings)


def params_yaml(path: Path, gan: float = 0.0, **train) -> None:
    from fomm_core.config import to_mapping

    train_section = to_mapping(tiny_train(**train))
    train_section["betas"] = list(train_section["betas"])
    path.write_text(yaml.safe_dump({"model": to_mapping(tiny_model()), "losses": to_mapping(tiny_losses(gan)),
                                    "train": train_section}))


def ddp_worker(rank: int, world: int, init_file: str, shards: str, out: str, result_dir: str) -> None:
    """One rank of the 2-process gloo test: train, then dump this rank's weights."""
    import torch

    from fomm_core.training import DistInfo, Trainer

    torch.set_num_threads(1)
    trainer = Trainer(shards, out, tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=2, epochs=1),
                      dist_info=DistInfo(rank, world, 0), init_method=f"file://{init_file}", log=lambda *a, **k: None)
    try:
        trainer.run()
        state = {f"{name}.{k}": v for name, m in trainer.models().items() for k, v in m.state_dict().items()}
        torch.save(state, Path(result_dir) / f"rank{rank}.pt")
    finally:
        trainer.close()
