"""``fomm extract-keypoints``: the trained FOMM detector's keypoints for every clip (talker data)."""

from __future__ import annotations

from pathlib import Path

import typer

from fomm_core.outputs import check_output_dir, replace_output_dir
from fomm_core.checkpoint import load_inference_models
from fomm_core.data import ClipFramesDataset, ShardStore
from fomm_core.errors import FommError
from fomm_core.inference.animate import fold_batchnorm
from fomm_core.inference.device import resolve_device
from fomm_core.talker import extract_clip_keypoints, keypoints_path, save_clip_keypoints
from pipeline.cli_support import user_errors
from pipeline.progress import progress_bar, summary


@user_errors
def command(
    checkpoint: Path = typer.Option(Path("artifacts/train/checkpoint.pt"), "--checkpoint",
                                    help="FOMM checkpoint written by fomm train."),
    shards: Path = typer.Option(Path("artifacts/shards"), "--shards", help="fomm shard output folder."),
    out: Path = typer.Option(Path("artifacts/keypoints"), "--out",
                             help="Writes OUT/{partition}/{clip_id}.npz (value, jacobian, fps); replaced atomically."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Frames per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu or cuda[:N]."),
) -> None:
    """Run the keypoint detector over every frame of every clip, at the resolution it was trained at.

    The audio-driven talker learns to predict these keypoints and jacobians from speech; the
    FOMM generator then renders them.
    """
    check_output_dir(out, "extract-keypoints", (checkpoint, shards))
    dev = resolve_device(device)
    kp_detector, _, config, frame_size, *_ = load_inference_models(checkpoint, dev)
    if not config.estimate_jacobian:
        raise FommError(f"{checkpoint}: the talker needs keypoint jacobians; train with model.estimate_jacobian: true")
    kp_detector = fold_batchnorm(kp_detector)
    store = ShardStore(shards)
    dataset = ClipFramesDataset(store, None, frame_size=frame_size)
    if not dataset.clips:
        raise FommError(f"{shards / 'index.parquet'}: no clips")
    with replace_output_dir(out, "extract-keypoints", (checkpoint, shards)) as tmp:
        with progress_bar() as bar:
            task = bar.add_task("keypoints", total=sum(c.num_frames for c in dataset.clips))
            for clip in dataset.clips:
                frames = dataset.iter_clip_frames(clip.clip_id, batch_size)
                kp = extract_clip_keypoints(kp_detector, frames, dev)
                if kp["value"].shape[0] != clip.num_frames:
                    raise FommError(f"clip {clip.clip_id}: decoded {kp['value'].shape[0]} of {clip.num_frames} "
                                    "frames; rebuild the shards")
                save_clip_keypoints(keypoints_path(tmp, clip.partition, clip.clip_id), kp["value"], kp["jacobian"],
                                    clip.fps)
                bar.advance(task, clip.num_frames)
    frames = sum(c.num_frames for c in dataset.clips)
    summary(f"keypoints of {len(dataset.clips)} clips ({frames} frames, {config.num_kp} keypoints with jacobians, "
            f"{frame_size or 'native'} px) -> {out}")
