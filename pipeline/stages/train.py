"""``fomm train``: train the First Order Motion Model on the shards, tracked in MLflow."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import typer

from fomm_core.config import to_mapping
from fomm_core.losses import LossConfig
from fomm_core.model_config import ModelConfig
from pipeline.cli_support import metrics_dir_option, user_errors
from pipeline.metrics_file import check_metrics_files, write_dvc_metrics
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import log_line, summary

EXIT_TERMINATED = 143  # 128 + SIGTERM: a stopped run is not a finished stage (DVC must not cache it)



@user_errors
def command(
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; reads the model, losses and train sections."),
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="Output folder of `fomm shard`."),
    out: Path = typer.Option(Path("artifacts/train"), "--out", help="Writes checkpoint.pt and train_metrics.json here."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from OUT/checkpoint.pt (fresh start if absent)."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Track the run in the local MLflow store."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
    metrics_dir: Path = metrics_dir_option(),
) -> None:
    """Train the keypoint detector and generator (and discriminator when losses.generator_gan > 0).

    Checkpoints every train.checkpoint_every epochs and at the end; SIGTERM saves a checkpoint and
    exits with code 143 (continue with --resume). For several GPUs or nodes start it with torchrun,
    e.g. `torchrun --standalone --nproc-per-node 4 -m pipeline train` (several nodes: torchrun's
    --nnodes/--rdzv-endpoint); rank 0 logs and saves. The checkpoint is also logged to MLflow as the
    model `fomm-fomm` (a new version per run); METRICS_DIR/train.json holds the run's numbers for DVC.
    """
    from fomm_core.training import TrainConfig, Trainer, TrainingInterrupted, shards_fingerprint
    from fomm_core.training.distributed import env_dist_info
    from fomm_core.errors import FommError

    model_config = load_section(params, "model", ModelConfig)
    loss_config = load_section(params, "losses", LossConfig)
    train_config = load_section(params, "train", TrainConfig)
    if not (shards / "index.parquet").is_file():
        raise FommError(f"{shards}/index.parquet not found; run `fomm shard` first or pass --shards")

    info = env_dist_info()
    from pipeline import tracking

    if info.is_main:
        [numbers] = check_metrics_files(metrics_dir, "train", ("train.json",), (shards,))
    mlflow_store = tracking.open_store(mlflow_dir) if mlflow and info.is_main else None  # a bad store stops us before any work
    trainer = Trainer(shards, out, model_config, loss_config, train_config, resume=resume, log=log_line)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: trainer.request_stop())
    try:
        run_params = {"model": to_mapping(model_config), "losses": to_mapping(loss_config),
                      "train": to_mapping(train_config)}
        tags = {"shards_sha256": shards_fingerprint(shards), "shards_dir": str(shards.resolve()),
                "world_size": str(info.world_size), "resumed": str(resume and trainer.step > 0).lower()}
        if trainer.vgg_info is not None:
            tags.update({f"vgg.{k}": str(v) for k, v in trainer.vgg_info.log_params().items()})
        key_params = {"num_kp": model_config.num_kp, "lr_generator": train_config.lr_generator,
                      "batch_size": train_config.batch_size, "frame_size": train_config.frame_size}
        with tracking.tracked_run("train", run_params, tags, enabled=mlflow_store is not None, store=mlflow_store,
                                  key_params=key_params) as logger:
            trainer.logger = logger if info.is_main else trainer.logger
            try:
                result = trainer.run()
            except TrainingInterrupted as stop:
                if stop.path is not None:
                    logger.log_artifact(stop.path)
                log_line(f"stopped by SIGTERM at step {stop.step}; checkpoint saved to {stop.path}; continue with --resume")
                raise typer.Exit(EXIT_TERMINATED) from None
            if info.is_main:
                tracking.mark_output(logger, result.checkpoint)
                logger.log_artifact(out / "train_metrics.json")
                tracking.log_fomm_model(logger, result.checkpoint)  # the checkpoint travels inside the model
    finally:
        signal.signal(signal.SIGTERM, previous)
        trainer.close()
    if info.is_main:
        write_dvc_metrics(numbers, json.loads((out / "train_metrics.json").read_text()))
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.final_losses.items())
        summary(f"train: {result.steps_this_run} steps (to step {result.steps}, epoch {result.epochs_completed}) in "
                f"{result.seconds:.1f} s, {result.samples_per_second:.2f} samples/s; {losses}; "
                f"checkpoint {result.checkpoint}")
