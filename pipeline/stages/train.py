"""``fomm train``: train the First Order Motion Model on the shards, tracked in MLflow."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Optional

import typer

from fomm_core.config import to_mapping
from fomm_core.losses import LossConfig
from fomm_core.model_config import ModelConfig
from pipeline.cli_support import metrics_dir_option, user_errors
from pipeline.metrics_file import check_metrics_files, write_dvc_metrics
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import log_line, step_progress, summary

EXIT_TERMINATED = 143  # 128 + SIGTERM: a stopped run is not a finished stage (DVC must not cache it)


@user_errors
def command(
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; reads the model, losses and train sections."),
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="Output folder of `fomm shard`."),
    out: Path = typer.Option(Path("artifacts/train"), "--out",
                             help="Writes checkpoint.pt, train_metrics.json and train_losses.tsv here."),
    resume: Optional[bool] = typer.Option(
        None, "--resume/--fresh",
        help="Default: continue OUT/checkpoint.pt when it was trained with the same model, losses and train "
             "settings, shards and code (otherwise start fresh and say why). --resume: continue it or fail; "
             "--fresh: start from scratch."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Track the run in the local MLflow store."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
    metrics_dir: Path = metrics_dir_option(),
) -> None:
    """Train the keypoint detector and generator (and discriminator when losses.generator_gan > 0).

    Checkpoints every train.checkpoint_every epochs and at the end; SIGTERM saves a checkpoint and
    exits with code 143; the next run continues from it. train.nproc_per_node > 1 starts this
    command under `torchrun --standalone` with that many processes (one per GPU, gloo on CPU);
    for several nodes start it with torchrun yourself, e.g. `torchrun --nnodes 2 --nproc-per-node 4
    --rdzv-backend c10d --rdzv-endpoint HOST:29400 -m pipeline train` on each node. Rank 0 logs and saves.
    The checkpoint is also logged to MLflow as the model `fomm-fomm` (a new version per run);
    METRICS_DIR/train.json holds the run's numbers for DVC.
    """
    from fomm_core.errors import FommError
    from fomm_core.outputs import claim_output_dir
    from fomm_core.training import CHECKPOINT_NAME, METRICS_NAME, TrainConfig, Trainer, TrainingInterrupted
    from fomm_core.training.distributed import env_dist_info
    from fomm_core.training.frame_size import check_frame_size
    from fomm_core.training.resume import check_before_launch
    from pipeline import launch, tracking

    model_config = load_section(params, "model", ModelConfig)
    loss_config = load_section(params, "losses", LossConfig)
    train_config = load_section(params, "train", TrainConfig)
    check_frame_size(train_config.frame_size, model_config, loss_config)
    if not (shards / "index.parquet").is_file():
        raise FommError(f"{shards}/index.parquet not found; run `fomm shard` first or pass --shards")
    info = env_dist_info()
    mlflow_store = None
    if info.is_main:
        [numbers] = check_metrics_files(metrics_dir, "train", ("train.json",), (shards, params))
        if mlflow:
            mlflow_store = tracking.open_store(mlflow_dir)  # a bad store stops us before anything is written
        claim_output_dir(out, "train", (shards, params), legacy=(CHECKPOINT_NAME, METRICS_NAME))

    mode = {None: "auto", True: "require", False: "never"}[resume]
    nproc = launch.processes_per_node(train_config.nproc_per_node)
    if nproc > 1 and not launch.under_torchrun():
        check_before_launch(out / CHECKPOINT_NAME, model_config, loss_config, train_config, shards, nproc, mode)
        args = ["train", "--params", str(params), "--shards", str(shards), "--out", str(out),
                "--mlflow" if mlflow else "--no-mlflow", "--metrics-dir", str(metrics_dir)]
        args += [] if resume is None else ["--resume" if resume else "--fresh"]
        args += [] if mlflow_dir is None else ["--mlflow-dir", str(mlflow_dir)]
        log_line(f"train.nproc_per_node {train_config.nproc_per_node}: starting {nproc} processes with torchrun")
        code = launch.run_under_torchrun(nproc, args)
        if code != 0:
            raise typer.Exit(code)
        return

    trainer = Trainer(shards, out, model_config, loss_config, train_config, resume=mode, log=log_line)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: trainer.request_stop())
    try:
        run_params = {"model": to_mapping(model_config), "losses": to_mapping(loss_config),
                      "train": to_mapping(train_config)}
        tags = {"shards_sha256": trainer.shards_sha256, "shards_dir": str(shards.resolve()),
                "world_size": str(info.world_size), "resumed": str(trainer.resumed).lower()}
        if trainer.vgg_info is not None:
            tags.update({f"vgg.{k}": str(v) for k, v in trainer.vgg_info.log_params().items()})
        key_params = {"num_kp": model_config.num_kp, "lr_generator": train_config.lr_generator,
                      "batch_size": train_config.batch_size, "frame_size": train_config.frame_size}
        with tracking.tracked_run("train", run_params, tags, enabled=mlflow_store is not None, store=mlflow_store,
                                  key_params=key_params) as logger, \
                step_progress("train", trainer.total_steps, trainer.step) as on_step:
            trainer.logger = logger if info.is_main else trainer.logger
            trainer.on_step = on_step if info.is_main else None
            try:
                result = trainer.run()
            except TrainingInterrupted as stop:
                if stop.path is not None:
                    logger.log_artifact(stop.path)
                log_line(f"stopped by SIGTERM at step {stop.step}; checkpoint saved to {stop.path}; "
                         "the next `fomm train` (or `dvc repro`) continues from it")
                raise typer.Exit(EXIT_TERMINATED) from None
            if info.is_main:
                tracking.mark_output(logger, result.checkpoint)
                logger.log_artifact(out / METRICS_NAME)
                tracking.log_fomm_model(logger, result.checkpoint)  # the checkpoint travels inside the model
    finally:
        signal.signal(signal.SIGTERM, previous)
        trainer.close()
    if info.is_main:
        write_dvc_metrics(numbers, json.loads((out / METRICS_NAME).read_text()))
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.final_losses.items())
        summary(f"train: {result.steps_this_run} steps (to step {result.steps}, epoch {result.epochs_completed}) in "
                f"{result.seconds:.1f} s, {result.samples_per_second:.2f} samples/s; {losses}; "
                f"checkpoint {result.checkpoint}")
