"""``fomm train-talker``: speech -> FOMM keypoints (MS-Sync), and the model folder `fomm talk` uses."""

from __future__ import annotations

from pathlib import Path

import typer

from fomm_core.checkpoint import load_inference_models, write_inference_copy
from fomm_core.config import to_mapping
from fomm_core.errors import FommError
from fomm_core.talker import (Recorded, TalkerModelConfig, TalkerTrainConfig, check_compatible,
                              load_syncers_checkpoint, require_same_fomm, save_talker_checkpoint, train_talker)
from pipeline.cli_support import metrics_dir_option, user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import log_line, summary
from pipeline.metrics_file import check_metrics_files, finite_numbers, write_dvc_metrics, write_metrics_json
from pipeline.stages.talker_common import (CHECKPOINT_HELP, fomm_checkpoint, load_clips, progress_and_curve,
                                           require_clip_inputs)

TALKER_NAME = "talker.pt"
FOMM_NAME = "fomm.pt"
METRICS_NAME = "talker_metrics.json"
CURVE_NAME = "talker_losses.tsv"


@user_errors
def command(
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="fomm shard output folder."),
    keypoints: Path = typer.Option(Path("artifacts/keypoints"), "--keypoints", help="fomm extract-keypoints output."),
    syncers: Path = typer.Option(Path("artifacts/syncer/syncers.pt"), "--syncers", help="fomm train-syncer output."),
    checkpoint: Path = typer.Option(None, "--checkpoint",
                                    help=CHECKPOINT_HELP + " Its detector and generator are copied into OUT/fomm.pt."),
    out: Path = typer.Option(Path("artifacts/talker"), "--out",
                             help="Model folder for fomm talk: talker.pt, fomm.pt, talker_metrics.json, talker_losses.tsv."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params",
                                help="params.yaml; reads talker_fomm, talker_model and talker_train."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Track the run in the local MLflow store."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
    metrics_dir: Path = metrics_dir_option(),
) -> None:
    """Train the causal speech-to-keypoints talker and write the model folder `fomm talk` uses.

    Teacher forcing first, then free-running rollouts with the temporal GAN, the frozen
    syncers' multi-scale sync loss and small L2 terms. The talker with its FOMM is logged to MLflow
    as the model `fomm-talker` (a new version per run); METRICS_DIR/talker.json holds the numbers.
    """
    from fomm_core.outputs import check_output_dir, claim_output_dir
    from fomm_core.talker.training import TALKER_METRICS
    from fomm_core.training import shards_fingerprint
    from pipeline import tracking

    model_config = load_section(params, "talker_model", TalkerModelConfig)
    train_config = load_section(params, "talker_train", TalkerTrainConfig)
    if not syncers.is_file():
        raise FommError(f"{syncers}: not found; run `fomm train-syncer` first or pass --syncers")
    checkpoint = fomm_checkpoint(checkpoint, params)
    fomm = load_inference_models(checkpoint)
    if fomm.config.num_kp != model_config.num_kp:
        raise FommError(f"{checkpoint} detects {fomm.config.num_kp} keypoints but talker_model.num_kp in {params} is "
                        f"{model_config.num_kp}; use the FOMM checkpoint the keypoints were extracted with")
    sync_models = load_syncers_checkpoint(syncers)
    try:
        check_compatible(model_config, sync_models.config)
    except ValueError as exc:
        raise FommError(f"{params}: talker_model does not match the syncers in {syncers} ({exc})") from None
    require_clip_inputs(shards, keypoints)
    inputs = (shards, keypoints, syncers, checkpoint, params)
    legacy = (TALKER_NAME, FOMM_NAME, METRICS_NAME)
    [numbers] = check_metrics_files(metrics_dir, "train-talker", ("talker.json",), inputs)
    mlflow_store = tracking.open_store(mlflow_dir) if mlflow else None  # a bad store stops us before any work
    check_output_dir(out, "train-talker", inputs, legacy=legacy)
    clips = load_clips(shards, keypoints, "train", model_config.audio_per_frame, log_line)
    fomm_sha256 = require_same_fomm(
        Recorded(f"the FOMM checkpoint {checkpoint}", fomm.fomm_sha256, ""),
        Recorded(f"the keypoints in {keypoints}", clips.fomm_sha256, "fomm extract-keypoints"),
        Recorded(f"the syncers {syncers}", sync_models.fomm_sha256, "fomm train-syncer"))
    claim_output_dir(out, "train-talker", inputs, legacy=legacy)  # only now is anything written
    run_params = {"talker_model": to_mapping(model_config), "talker_train": to_mapping(train_config)}
    tags = {"shards_sha256": shards_fingerprint(shards), "syncers": str(syncers.resolve()), "fomm_sha256": fomm_sha256}
    key_params = {"num_kp": model_config.num_kp, "steps": train_config.steps, "lr": train_config.lr}
    with tracking.tracked_run("train-talker", run_params, tags, enabled=mlflow_store is not None, store=mlflow_store,
                              key_params=key_params, inputs={"checkpoint": checkpoint, "syncers": syncers}) as logger:
        with progress_and_curve("train-talker", train_config.steps, out / CURVE_NAME, TALKER_METRICS) as on_step:
            talker, metrics = train_talker(clips, sync_models, train_config, log=log_line, logger=logger,
                                           model_config=model_config, on_step=on_step)
        talker.fomm_sha256 = fomm_sha256
        save_talker_checkpoint(out / TALKER_NAME, talker)
        write_inference_copy(checkpoint, out / FOMM_NAME)
        metrics = {**finite_numbers(metrics), "num_clips": len(clips)}
        write_metrics_json(out / METRICS_NAME, metrics)
        write_dvc_metrics(numbers, metrics)
        logger.log_metrics({f"final/{k}": v for k, v in finite_numbers(metrics).items()}, train_config.steps)
        tracking.mark_output(logger, out / TALKER_NAME)
        tracking.log_talker_model(logger, out / TALKER_NAME, out / FOMM_NAME)  # talker.pt travels inside the model
    summary(f"train-talker: {train_config.steps} steps on {len(clips)} clips; "
            + ", ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in metrics.items() if k.startswith("talker/"))
            + f" -> {out}")
