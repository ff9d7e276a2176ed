"""``fomm train-syncer``: the multi-scale audio/keypoint synchrony encoders (MS-Sync), tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

import typer

from fomm_core.checkpoint import read_weights_sha256
from fomm_core.config import to_mapping
from fomm_core.talker import Recorded, SyncerConfig, require_same_fomm, save_syncers_checkpoint, train_syncers
from pipeline.cli_support import metrics_dir_option, user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import log_line, summary
from pipeline.metrics_file import check_metrics_files, finite_numbers, write_dvc_metrics, write_metrics_json
from pipeline.stages.talker_common import (CHECKPOINT_HELP, fomm_checkpoint, load_clips, progress_and_curve,
                                           require_clip_inputs)

SYNCERS_NAME = "syncers.pt"
METRICS_NAME = "syncer_metrics.json"
CURVE_NAME = "syncer_losses.tsv"


@user_errors
def command(
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="fomm shard output folder."),
    keypoints: Path = typer.Option(Path("artifacts/keypoints"), "--keypoints", help="fomm extract-keypoints output."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP + " The keypoints must come from it."),
    out: Path = typer.Option(Path("artifacts/syncer"), "--out",
                             help="Writes syncers.pt, syncer_metrics.json and syncer_losses.tsv here."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; reads the syncer and talker_fomm sections."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Track the run in the local MLflow store."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
    metrics_dir: Path = metrics_dir_option(),
) -> None:
    """Train one keypoint/audio encoder pair per temporal pyramid level on the train clips.

    Contrastive (symmetric InfoNCE, negatives from other offsets of the same clip). The frozen
    syncers give the talker its sync loss and score synchrony in `fomm evaluate-talker`.
    """
    from fomm_core.outputs import check_output_dir, claim_output_dir
    from fomm_core.talker.training import syncer_metrics
    from fomm_core.training import shards_fingerprint
    from pipeline import tracking

    config = load_section(params, "syncer", SyncerConfig)
    checkpoint = fomm_checkpoint(checkpoint, params)
    require_clip_inputs(shards, keypoints)
    inputs = (shards, keypoints, params, checkpoint)
    [numbers] = check_metrics_files(metrics_dir, "train-syncer", ("syncer.json",), inputs)
    mlflow_store = tracking.open_store(mlflow_dir) if mlflow else None  # a bad store stops us before any work
    check_output_dir(out, "train-syncer", inputs, legacy=(SYNCERS_NAME, METRICS_NAME))
    clips = load_clips(shards, keypoints, "train", config.audio_per_frame, log_line)
    fomm_sha256 = require_same_fomm(Recorded(f"the FOMM checkpoint {checkpoint}", read_weights_sha256(checkpoint), ""),
                                    Recorded(f"the keypoints in {keypoints}", clips.fomm_sha256,
                                             "fomm extract-keypoints"))
    claim_output_dir(out, "train-syncer", inputs, legacy=(SYNCERS_NAME, METRICS_NAME))
    tags = {"shards_sha256": shards_fingerprint(shards), "fomm_sha256": fomm_sha256}
    key_params = {"levels": config.levels, "window": config.window, "steps": config.steps, "lr": config.lr}
    with tracking.tracked_run("train-syncer", {"syncer": to_mapping(config)}, tags, enabled=mlflow_store is not None,
                              store=mlflow_store, key_params=key_params, inputs={"checkpoint": checkpoint}) as logger:
        with progress_and_curve("train-syncer", config.steps, out / CURVE_NAME, syncer_metrics(config)) as on_step:
            syncers, metrics = train_syncers(clips, config, log=log_line, logger=logger, on_step=on_step)
        syncers.fomm_sha256 = fomm_sha256
        save_syncers_checkpoint(out / SYNCERS_NAME, syncers)
        metrics = {**finite_numbers(metrics), "num_clips": len(clips)}
        write_metrics_json(out / METRICS_NAME, metrics)
        write_dvc_metrics(numbers, metrics)
        logger.log_metrics({f"final/{k}": v for k, v in finite_numbers(metrics).items()}, config.steps)
        logger.log_artifact(out / SYNCERS_NAME)
        tracking.mark_output(logger, out / SYNCERS_NAME)
    accuracy = ", ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in metrics.items() if "/acc_l" in k)
    summary(f"train-syncer: {config.steps} steps on {len(clips)} clips; {accuracy} "
            f"(chance {1 / config.candidates:.2f}) -> {out / SYNCERS_NAME}")
