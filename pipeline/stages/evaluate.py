"""``fomm evaluate``: reconstruction metrics of a trained FOMM on the test clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from fomm_core.outputs import check_output_dir, replace_output_dir
from fomm_core.checkpoint import load_inference_models
from fomm_core.config import to_mapping
from fomm_core.data import ClipFramesDataset, ShardStore
from fomm_core.errors import FommError
from fomm_core.inference.device import resolve_device
from fomm_core.inference.evaluate import evaluate_model
from fomm_core.faces import load_backend
from pipeline.cli_support import metrics_dir_option, user_errors
from pipeline.metrics_file import check_metrics_files, finite_numbers, write_dvc_metrics, write_metrics_json, write_tsv
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import progress_bar, summary


@dataclass
class EvaluateConfig:
    """The ``evaluate`` section of params.yaml."""

    batch_size: int = 16  # frames per forward pass
    max_clips: int = 0  # test clips to evaluate; 0 = all
    device: str = "auto"  # auto (CUDA if available) | cpu | cuda[:N]
    num_videos: int = 3  # reconstruction videos (source | driving | prediction) to save
    landmark_ridge: float = 1e-3  # ridge strength of the keypoint -> landmark regression
    face_detector: str = "hog"  # AKD/AED face detector: hog (fast, frontal) | cnn (dlib's MMOD, ~80x slower on CPU)

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_clips < 0:
            raise ValueError(f"max_clips must be >= 0 (0 = all), got {self.max_clips}")
        if self.num_videos < 0:
            raise ValueError(f"num_videos must be >= 0, got {self.num_videos}")
        if self.face_detector not in ("hog", "cnn"):
            raise ValueError(f"face_detector must be hog or cnn, got {self.face_detector!r}")
        if not self.landmark_ridge >= 0:
            raise ValueError(f"landmark_ridge must be >= 0, got {self.landmark_ridge}")


def _fmt(value: object, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


PER_CLIP_COLUMNS = ("clip_id", "frames", "l1", "baseline_l1", "psnr", "ssim")


def _log_to_mlflow(metrics: dict, config: EvaluateConfig, checkpoint: Path, shards: Path, out: Path,
                   per_clip: Path, mlflow_store) -> None:
    """One MLflow run of kind "evaluate", a child of the run that trained the checkpoint:
    numeric metrics, the metrics file, the per-clip table and the videos."""
    from fomm_core.training import shards_fingerprint
    from pipeline import tracking

    tags = {"shards_sha256": shards_fingerprint(shards), "checkpoint": str(checkpoint.resolve())}
    with tracking.tracked_run("evaluate", {"evaluate": to_mapping(config)}, tags, store=mlflow_store,
                              key_params={"frame_size": metrics["frame_size"]}, inputs={"checkpoint": checkpoint},
                              evaluates="checkpoint") as logger:
        logger.log_metrics(finite_numbers(metrics), 0)
        logger.log_artifact(out / "metrics.json")
        logger.log_artifact(per_clip)
        for video in sorted((out / "videos").glob("*.mp4")):
            logger.log_artifact(video, "videos")


@user_errors
def command(
    checkpoint: Path = typer.Option(Path("artifacts/train/checkpoint.pt"), "--checkpoint",
                                    help="Checkpoint written by fomm train."),
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="fomm shard output folder."),
    out: Path = typer.Option(Path("artifacts/eval"), "--out",
                             help="Output folder (metrics.json, videos/), replaced atomically."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml to read the evaluate section from."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the metrics and videos to the local MLflow store."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
    metrics_dir: Path = metrics_dir_option(),
) -> None:
    """Evaluate a checkpoint on the test clips by video reconstruction (as in the FOMM paper).

    Each test clip's first frame is the source and every frame drives it with its own
    keypoints. Reports mean L1, PSNR and SSIM against the real frames, the same numbers for
    the trivial "copy the source frame" baseline, and, on the synthetic set, the landmark
    error (keypoints -> ground-truth landmarks by ridge regression fitted on train clips,
    scored on test clips, normalised by the inter-ocular distance). Frames are resized to the
    resolution the checkpoint was trained at. Writes OUT/metrics.json and a few side-by-side
    videos in OUT/videos/, and logs both to an MLflow run of kind "evaluate". The numbers go to
    METRICS_DIR/evaluate.json and each clip's L1/PSNR/SSIM to METRICS_DIR/evaluate_clips.tsv (DVC).
    """
    from pipeline import tracking

    config = load_section(params, "evaluate", EvaluateConfig)
    check_output_dir(out, "evaluate", (checkpoint, shards))
    numbers, clips_table = check_metrics_files(metrics_dir, "evaluate", ("evaluate.json", "evaluate_clips.tsv"),
                                               (checkpoint, shards))
    mlflow_store = tracking.open_store(mlflow_dir) if mlflow else None  # a bad store stops us before any work
    device = resolve_device(config.device)
    store = ShardStore(shards)
    kp_detector, generator, _, frame_size, backbone, *_ = load_inference_models(checkpoint, device)
    test = ClipFramesDataset(store, "test", frame_size=frame_size)
    if not test.clips:
        raise FommError(f"{shards / 'index.parquet'}: no test clips; build shards with a test partition")
    train = ClipFramesDataset(store, "train", frame_size=frame_size)

    faces = load_backend(config.face_detector)
    clips = test.clips[: config.max_clips] if config.max_clips else test.clips
    total = sum(c.num_frames for c in clips)
    if any(c.has_groundtruth for c in clips):
        total += sum(c.num_frames for c in train.clips if c.has_groundtruth)
    with replace_output_dir(out, "evaluate", (checkpoint, shards)) as tmp:
        with progress_bar() as bar:
            task = bar.add_task("evaluate", total=total)
            metrics = evaluate_model(
                kp_detector, generator, test, train_dataset=train, batch_size=config.batch_size,
                max_clips=config.max_clips, video_dir=tmp / "videos", num_videos=config.num_videos,
                landmark_ridge=config.landmark_ridge, progress=lambda n: bar.advance(task, n),
                face_backend=faces,
            )
        metrics["checkpoint"] = str(checkpoint)
        metrics["device"] = str(device)
        metrics["frame_size"] = frame_size
        metrics["perceptual_backbone"] = backbone or "unknown"  # "random": trained without ImageNet VGG weights
        per_clip = metrics.pop("per_clip")
        write_metrics_json(tmp / "metrics.json", metrics)
    write_dvc_metrics(numbers, metrics)
    write_tsv(clips_table, PER_CLIP_COLUMNS, ([row[c] for c in PER_CLIP_COLUMNS] for row in per_clip))
    if mlflow_store is not None:
        _log_to_mlflow(metrics, config, checkpoint, shards, out, clips_table, mlflow_store)
    landmark = _fmt(metrics.get("landmark_error"))
    summary(
        f"evaluated {metrics['num_clips']} test clips ({metrics['num_frames']} frames): "
        f"L1 {_fmt(metrics['l1'])} (copy baseline {_fmt(metrics['baseline_l1'])}), "
        f"PSNR {_fmt(metrics['psnr'], 2)} dB ({_fmt(metrics['baseline_psnr'], 2)}), "
        f"SSIM {_fmt(metrics['ssim'])} ({_fmt(metrics['baseline_ssim'])}), "
        f"AKD {_fmt(metrics['akd'], 2)} px ({_fmt(metrics['baseline_akd'], 2)}), "
        f"AED {_fmt(metrics['aed'])} ({_fmt(metrics['baseline_aed'])}), "
        f"faces in {_fmt(metrics['face_pairs_rate'], 2)} of frame pairs, landmark error {landmark} "
        f"-> {out / 'metrics.json'}"
    )
