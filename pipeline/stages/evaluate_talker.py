"""``fomm evaluate-talker``: synchrony, keypoint error and mouth/head motion of the talker on test clips."""

from __future__ import annotations

from pathlib import Path

import typer

from fomm_core.checkpoint import read_weights_sha256
from fomm_core.outputs import check_output_dir, replace_output_dir
from fomm_core.config import to_mapping
from fomm_core.talker import (Recorded, TalkerEvalConfig, evaluate_talker_with_offsets, load_syncers_checkpoint,
                              load_talker_checkpoint, require_same_fomm)
from fomm_core.errors import FommError
from pipeline.cli_support import metrics_dir_option, user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import log_line, summary
from pipeline.metrics_file import check_metrics_files, finite_numbers, write_dvc_metrics, write_metrics_json, write_tsv
from pipeline.stages.talker_common import load_clips



def _rendered_mouth(talker_model, fomm: Path, shards: Path, test, config: TalkerEvalConfig) -> dict:
    """Mouth opening of the rendered talker (and of the real video) against the speech envelope."""
    import torch

    from fomm_core.checkpoint import load_inference_models
    from fomm_core.data import ClipFramesDataset
    from fomm_core.faces import load_backend
    from fomm_core.talker.rendered_mouth import rendered_mouth_metrics
    from fomm_core.talker.threads import limited_threads

    kp_detector, generator, _, frame_size, *_ = load_inference_models(fomm, "cpu")
    frames = ClipFramesDataset(shards, "test", frame_size=frame_size)

    def frames_of(clip_id: str) -> torch.Tensor:
        return torch.cat(list(frames.iter_clip_frames(clip_id, 64)))

    with limited_threads(config.threads), torch.inference_mode():
        return rendered_mouth_metrics(talker_model, kp_detector, generator, frames_of, test, load_backend(),
                                      chunk_frames=config.chunk_frames, max_clips=config.max_clips)


def _fmt(metrics: dict, key: str, digits: int = 3) -> str:
    value = metrics.get(key)
    return "n/a" if value is None else f"{value:.{digits}f}"


@user_errors
def command(
    talker: Path = typer.Option(Path("artifacts/talker/talker.pt"), "--talker", help="fomm train-talker output."),
    syncers: Path = typer.Option(Path("artifacts/syncer/syncers.pt"), "--syncers", help="fomm train-syncer output."),
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="fomm shard output folder."),
    keypoints: Path = typer.Option(Path("artifacts/keypoints"), "--keypoints", help="fomm extract-keypoints output."),
    fomm: Path = typer.Option(Path("artifacts/talker/fomm.pt"), "--fomm",
                              help="The FOMM renderer the talker was trained with (train-talker writes it)."),
    out: Path = typer.Option(Path("artifacts/talker_eval"), "--out", help="Writes metrics.json here (replaced atomically)."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; reads the talker_eval section."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the metrics to the local MLflow store."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
    metrics_dir: Path = metrics_dir_option(),
) -> None:
    """Score the talker on the test clips against the ground truth and shuffled audio.

    Syncer distance/confidence (LSE-D/LSE-C style), keypoint L2, mouth-opening correlation
    (synthetic data) and head-motion diversity; the rendered video's mouth opening (dlib
    landmarks) against the speech envelope, beside the same for shuffled audio and the real
    video; writes OUT/metrics.json and logs to MLflow (a child run of the train-talker run that
    wrote the talker). The numbers go to METRICS_DIR/talker_eval.json and the syncer distance
    per audio offset to METRICS_DIR/talker_sync_offsets.tsv (DVC).
    """
    from fomm_core.training import shards_fingerprint
    from pipeline import tracking

    config = load_section(params, "talker_eval", TalkerEvalConfig)
    inputs = (talker, syncers, shards, keypoints, fomm)
    check_output_dir(out, "evaluate-talker", inputs)
    numbers, offsets = check_metrics_files(metrics_dir, "evaluate-talker",
                                           ("talker_eval.json", "talker_sync_offsets.tsv"), inputs)
    mlflow_store = tracking.open_store(mlflow_dir) if mlflow else None  # a bad store stops us before any work
    for path, stage in ((talker, "train-talker"), (syncers, "train-syncer"), (fomm, "train-talker")):
        if not path.is_file():
            raise FommError(f"{path}: not found; run `fomm {stage}` first")
    talker_model = load_talker_checkpoint(talker)
    sync_models = load_syncers_checkpoint(syncers)
    a = talker_model.config.audio_per_frame
    test = load_clips(shards, keypoints, "test", a, log_line)
    train = load_clips(shards, keypoints, "train", a, log_line)
    require_same_fomm(Recorded(f"the keypoints in {keypoints} (train)", train.fomm_sha256, "fomm extract-keypoints"),
                      Recorded(f"the keypoints in {keypoints} (test)", test.fomm_sha256, "fomm extract-keypoints"),
                      Recorded(f"the syncers {syncers}", sync_models.fomm_sha256, "fomm train-syncer"),
                      Recorded(f"the talker {talker}", talker_model.fomm_sha256, "fomm train-talker"),
                      Recorded(f"the renderer {fomm}", read_weights_sha256(fomm), "fomm train-talker"))
    metrics, curve = evaluate_talker_with_offsets(talker_model, sync_models, test, config, clips_train=train)
    metrics.update(_rendered_mouth(talker_model, fomm, shards, test, config))
    with replace_output_dir(out, "evaluate-talker", inputs) as tmp:
        write_metrics_json(tmp / "metrics.json", metrics)
    write_dvc_metrics(numbers, metrics)
    columns = [c for c in ("offset", "gen", "gt", "shuffled") if c in curve]
    write_tsv(offsets, columns, zip(*(curve[c].tolist() for c in columns)))
    if mlflow_store is not None:
        tags = {"shards_sha256": shards_fingerprint(shards), "talker": str(talker.resolve())}
        with tracking.tracked_run("evaluate-talker", {"talker_eval": to_mapping(config)}, tags, store=mlflow_store,
                                  key_params={"max_offset": config.max_offset},
                                  inputs={"talker": talker, "syncers": syncers}, evaluates="talker") as logger:
            logger.log_metrics(finite_numbers(metrics), 0)
            logger.log_artifact(out / "metrics.json")
            logger.log_artifact(offsets)
    summary(
        f"evaluate-talker on {int(metrics.get('num_clips') or 0)} test clips: mouth correlation {_fmt(metrics, 'mouth_corr')} "
        f"(shuffled audio {_fmt(metrics, 'shuffled_mouth_corr')}), sync distance {_fmt(metrics, 'gen_sync_distance')} "
        f"(ground truth {_fmt(metrics, 'gt_sync_distance')}, shuffled {_fmt(metrics, 'shuffled_sync_distance')}), "
        f"confidence {_fmt(metrics, 'gen_sync_confidence')} (gt {_fmt(metrics, 'gt_sync_confidence')}, shuffled "
        f"{_fmt(metrics, 'shuffled_sync_confidence')}), keypoint L2 {_fmt(metrics, 'kp_l2')}, rendered mouth vs speech "
        f"{_fmt(metrics, 'rendered_mouth_envelope_corr')} (shuffled {_fmt(metrics, 'shuffled_mouth_envelope_corr')}, "
        f"real video {_fmt(metrics, 'real_mouth_envelope_corr')}) -> {out / 'metrics.json'}"
    )
