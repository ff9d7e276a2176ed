"""``fomm animate``: make a source image move like the face in a driving video."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from fomm_core.checkpoint import load_inference_models
from fomm_core.errors import FommError
from fomm_core.inference.animate import Animator, animate_batches, from_uint8_frames
from fomm_core.inference.device import resolve_device, resolve_precision
from fomm_core.faces import load_backend
from fomm_core.inference.face_crop import image_crop_box, read_cropped_batches, video_crop_boxes
from fomm_core.inference.video_io import (
    VideoWriter, center_square, probe_video, read_image, read_video_batches, resize_square, written_by_fomm,
)
from fomm_core.outputs import check_output_file
from pipeline.cli_support import user_errors
from pipeline.progress import track, summary

CONTAINERS = (".mp4", ".mkv", ".mov")


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``left,top,right,bottom`` pixels (as ``fomm find-crops`` prints them)."""
    try:
        left, top, right, bottom = (int(v) for v in text.split(","))
    except ValueError:
        raise FommError(f"--crop-box {text!r}: expected left,top,right,bottom in whole pixels") from None
    if right <= left or bottom <= top or left < 0 or top < 0:
        raise FommError(f"--crop-box {text!r}: the box is empty or starts outside the frame")
    return left, top, right, bottom


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
                                   help="Find the face (dlib landmarks) and crop source and driving like the training "
                                        "clips; the driving crop follows the face, smoothed over time."),
    crop_box: Optional[str] = typer.Option(None, "--crop-box", metavar="L,T,R,B",
                                           help="Crop the driving video to this box (pixels; fomm find-crops prints it)."),
    start: float = typer.Option(0.0, "--start", min=0.0, help="Start of the driving video to use, seconds."),
    end: Optional[float] = typer.Option(None, "--end", help="End of the driving video to use, seconds (default: its end)."),
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

    Inputs are cropped to a centred square (or, with --crop-face, framed like the training
    clips around the face found by dlib's landmarks; --crop-box fixes the driving crop) and
    resized to SIZE x SIZE. Frames are processed in batches and streamed to ffmpeg, so
    memory stays flat for long videos; the driving video's audio is carried over.
    """
    if out.suffix.lower() not in CONTAINERS:
        raise FommError(f"--out {out}: use a .mp4, .mkv or .mov file name")
    if end is not None and end <= start:
        raise FommError(f"--end {end} must be after --start {start}")
    check_output_file(out, "animate", (source, driving, checkpoint), is_ours=written_by_fomm)
    message = animate_file(read_image(source), str(source), driving, checkpoint, out, relative=relative,
                           adapt_scale=adapt_scale, crop_face=crop_face, batch_size=batch_size, device=device,
                           precision=precision, size=size, driving_box=parse_box(crop_box) if crop_box else None,
                           start=start, duration=None if end is None else end - start)
    summary(message)


def animate_file(image: np.ndarray, source_name: str, driving: Path, checkpoint: Path, out: Path, *,
                 relative: bool = True, adapt_scale: bool = False, crop_face: bool = False, batch_size: int = 8,
                 device: str = "auto", precision: str = "auto", size: int = 0, audio_from: Path | None = None,
                 driving_box: tuple[int, int, int, int] | None = None, start: float = 0.0,
                 duration: float | None = None) -> str:
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

    source_box = None
    crop_note = ""
    if driving_box is not None:
        left, top, right, bottom = driving_box
        if right > info.width or bottom > info.height:
            raise FommError(f"--crop-box {left},{top},{right},{bottom} reaches outside the {info.width}x{info.height} "
                            f"frames of {driving}")
        boxes = np.array([driving_box])
    else:
        boxes = np.array([center_square(info.width, info.height)])
    if crop_face:
        faces = load_backend()
        source_box = image_crop_box(image, source_name, faces)
        if driving_box is None:
            tracked = video_crop_boxes(driving, faces, start=start, duration=duration)
            boxes = tracked.boxes
            crop_note = f", face in {tracked.found} of {tracked.measured} measured driving frames"
    source_frame = resize_square(image, size, source_box)
    animator = Animator(kp_detector, generator, from_uint8_frames(source_frame[None]), relative=relative,
                        adapt_scale=adapt_scale, dtype=dtype)

    if len(boxes) == 1 and start == 0 and duration is None:  # one fixed crop: ffmpeg crops and scales
        batches = read_video_batches(driving, size, batch_size, tuple(int(v) for v in boxes[0]))
    else:
        batches = read_cropped_batches(driving, boxes, size, batch_size, start=start, duration=duration)
    total = -(-len(boxes) // batch_size) if len(boxes) > 1 else (-(-info.num_frames // batch_size) or None)
    audio = audio_from or (driving if info.has_audio else None)
    audio_start = start if audio_from is None else 0.0
    with VideoWriter(out, size, size, info.fps, audio_from=audio, audio_start=audio_start) as writer:
        for frames in animate_batches(animator, track(batches, total, "animate")):
            writer.write(frames)
    if writer.frames_written == 0:
        raise FommError(f"{driving}: no frames decoded")
    mode = "relative" if relative else "absolute"
    scale = f", movement scale {animator.scale:.3f}" if adapt_scale else ""
    return (
        f"animated {writer.frames_written} frames ({size}x{size}, {info.fps:.3g} fps, {mode}{scale}"
        f"{', with audio' if audio else ', no audio'}{crop_note}) on {dev} in {str(dtype).removeprefix('torch.')} -> {out}"
    )
