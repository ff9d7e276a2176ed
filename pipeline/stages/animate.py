"""``fomm animate``: make a source image move like the face in a driving video."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import typer

from fomm_core.checkpoint import load_inference_models
from fomm_core.errors import FommError
from fomm_core.tool_paths import tool_arg
from fomm_core.inference.animate import Animator, animate_batches, from_uint8_frames
from fomm_core.inference.device import resolve_device, resolve_precision
from fomm_core.inference.face_crop import face_crop_box, load_face_detector
from fomm_core.inference.video_io import (
    VideoWriter, probe_video, read_image, read_video_batches, resize_square, written_by_fomm,
)
from fomm_core.outputs import check_output_file
from pipeline.cli_support import user_errors
from pipeline.progress import track, summary

CONTAINERS = (".mp4", ".mkv", ".mov")


def _first_frame(path: Path, width: int, height: int) -> np.ndarray:
    """The driving video's first frame at full size (for the face detector)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", tool_arg(path), "-map", "0:v:0", "-frames:v", "1",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    result = subprocess.run(cmd, capture_output=True)
    if result.returncode != 0 or len(result.stdout) < width * height * 3:
        raise FommError(f"{path}: cannot decode the first frame")
    return np.frombuffer(result.stdout[: width * height * 3], np.uint8).reshape(height, width, 3)


@user_errors
def command(
    source: Path = typer.Option(..., "--source", help="Image to animate (PNG, JPEG...), ideally a face crop."),
    driving: Path = typer.Option(..., "--driving", help="Video whose face motion drives the image."),
    checkpoint: Path = typer.Option(Path("artifacts/train/checkpoint.pt"), "--checkpoint",
                                    help="Checkpoint written by fomm train."),
    out: Path = typer.Option(..., "--out", help="Output video (.mp4, .mkv or .mov), written atomically."),
    relative: bool = typer.Option(True, "--relative/--absolute",
                                  help="Relative: apply the driving motion since its first frame to the source "
                                       "(keeps the source's face shape). Absolute: use the driving keypoints as is."),
    adapt_scale: bool = typer.Option(False, "--adapt-scale",
                                     help="Scale the motion by the ratio of source/driving keypoint hull sizes."),
    crop_face: bool = typer.Option(False, "--crop-face",
                                   help="Detect the face (OpenCV Haar cascade) and crop source and driving to it."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Driving frames per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu or cuda[:N]."),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (bfloat16 where the CPU/GPU has native bf16, else float32), "
                                       "float32 or bfloat16."),
    size: int = typer.Option(0, "--size", min=0,
                             help="Frame size of source, driving and output; 0 = the size the checkpoint was "
                                  "trained at (256 if it does not say)."),
) -> None:
    """Animate SOURCE with the motion of DRIVING using a trained FOMM checkpoint.

    Inputs are cropped to a centred square (or the detected face with --crop-face) and
    resized to SIZE x SIZE. Frames are processed in batches and streamed to ffmpeg, so
    memory stays flat for long videos; the driving video's audio is carried over.
    """
    if out.suffix.lower() not in CONTAINERS:
        raise FommError(f"--out {out}: use a .mp4, .mkv or .mov file name")
    check_output_file(out, "animate", (source, driving, checkpoint), is_ours=written_by_fomm)
    message = animate_file(read_image(source), str(source), driving, checkpoint, out, relative=relative,
                           adapt_scale=adapt_scale, crop_face=crop_face, batch_size=batch_size, device=device,
                           precision=precision, size=size)
    summary(message)


def animate_file(image: np.ndarray, source_name: str, driving: Path, checkpoint: Path, out: Path, *,
                 relative: bool = True, adapt_scale: bool = False, crop_face: bool = False, batch_size: int = 8,
                 device: str = "auto", precision: str = "auto", size: int = 0, audio_from: Path | None = None) -> str:
    """Animate ``image`` with ``driving``'s motion into ``out``; returns the summary line.

    The output carries ``audio_from``'s audio if given, else the driving video's own (if any).
    """
    info = probe_video(driving)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    kp_detector, generator, _, trained_size, *_ = load_inference_models(checkpoint, dev)
    size = size or trained_size or 256
    if size < 16:
        raise FommError(f"--size {size}: use at least 16 pixels (or 0 for the checkpoint's training size)")

    source_box = driving_box = None
    if crop_face:
        detector = load_face_detector()
        source_box = face_crop_box(image, source_name, detector=detector)
        driving_box = face_crop_box(_first_frame(driving, info.width, info.height), f"{driving} (first frame)",
                                    detector=detector)
    source_frame = resize_square(image, size, source_box)
    animator = Animator(kp_detector, generator, from_uint8_frames(source_frame[None]), relative=relative,
                        adapt_scale=adapt_scale, dtype=dtype)

    batches = read_video_batches(driving, size, batch_size, driving_box)
    total = -(-info.num_frames // batch_size) if info.num_frames else None
    audio = audio_from or (driving if info.has_audio else None)
    with VideoWriter(out, size, size, info.fps, audio_from=audio) as writer:
        for frames in animate_batches(animator, track(batches, total, "animate")):
            writer.write(frames)
    if writer.frames_written == 0:
        raise FommError(f"{driving}: no frames decoded")
    mode = "relative" if relative else "absolute"
    scale = f", movement scale {animator.scale:.3f}" if adapt_scale else ""
    return (
        f"animated {writer.frames_written} frames ({size}x{size}, {info.fps:.3g} fps, {mode}{scale}"
        f"{', with audio' if audio else ', no audio'}) on {dev} in {str(dtype).removeprefix('torch.')} -> {out}"
    )
