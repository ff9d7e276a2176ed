"""``fomm find-crops``: the face tracks of a long video, with ready ``fomm animate`` commands."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from fomm_core.atomic import write_text_atomic
from fomm_core.errors import FommError
from fomm_core.outputs import check_output_file
from pipeline.cli_support import user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import summary
from pipeline.tubes.config import TubesConfig
from pipeline.tubes.find import find_crops

COMMANDS_HEADER = "# fomm find-crops: one `fomm animate` per face track\n"


def _is_ours(path: Path) -> bool:
    try:
        return path.read_text(errors="replace").startswith(COMMANDS_HEADER)
    except OSError:
        return False


@user_errors
def command(
    video: Path = typer.Argument(..., metavar="VIDEO", help="A video with one or more faces (any length)."),
    source: Path = typer.Option(Path("source.png"), "--source", help="The image the commands animate."),
    checkpoint: Path = typer.Option(Path("artifacts/train/checkpoint.pt"), "--checkpoint",
                                    help="The checkpoint the commands use."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the commands to this file (a shell script)."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; its `tubes` section is the recipe."),
) -> None:
    """List the face tracks of VIDEO (time ranges, crop boxes) and print one ready
    `fomm animate ... --start S --end E --crop-box L,T,R,B` command per track.

    Tracks are found like `fomm tubes` finds them (tubes section of params.yaml: stride,
    iou_with_initial, min_frames, min_size...); each crop box frames the face like the
    training clips (the union of the landmark-based crops over the track).
    """
    if not video.is_file():
        raise FommError(f"{video}: video not found")
    if out is not None:
        check_output_file(out, "find-crops", (video, source, checkpoint), is_ours=_is_ours)
    config = load_section(params, "tubes", TubesConfig)
    crops, sampled = find_crops(video, config)
    if not crops:
        raise FommError(f"{video}: no face track of at least {config.min_frames} frames and {config.min_size:g} px "
                        f"in {sampled} sampled frames; lower tubes.min_frames / tubes.min_size or use another video")
    lines = [COMMANDS_HEADER]
    for n, crop in enumerate(crops, start=1):
        start, end = crop.seconds
        box = ",".join(str(v) for v in crop.box)
        summary(f"track {n}: {start:.2f}-{end:.2f} s (frames {crop.start}-{crop.end}), crop box {box}, "
                f"face {crop.face_side:.0f} px")
        cmd = ["fomm", "animate", "--source", str(source), "--driving", str(video), "--checkpoint", str(checkpoint),
               "--start", f"{start:.2f}", "--end", f"{end:.2f}", "--crop-box", box,
               "--out", f"{video.stem}_track{n}.mp4", "--relative", "--adapt-scale"]
        lines.append(shlex.join(cmd) + "\n")
    for line in lines[1:]:
        print(line, end="")
    if out is not None:
        write_text_atomic(out, "".join(lines))
    summary(f"find-crops: {len(crops)} face track(s) in {video} ({sampled} frames sampled)"
            + (f"; commands in {out}" if out is not None else ""))
