"""``fomm synth``: render the built-in synthetic talking-head set (the offline default source)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from fomm_core.outputs import check_output_dir, replace_output_dir
from pipeline.cli_support import user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import progress_bar, summary
from pipeline.synth.config import SynthConfig
from pipeline.synth.dataset import synthesize
from pipeline.synth.plan import plan_videos
from pipeline.synth.writer import ffmpeg_binary

__all__ = ["SynthConfig", "command"]

DEFAULT_OUT = Path("artifacts/synth")


@user_errors
def command(
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml to read the `synth` section from."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Output directory (replaced as a whole when the run succeeds)."),
) -> None:
    """Render synthetic talking-head videos with speech audio, a VoxCeleb-format CSV and ground truth.

    Each identity gets its own face and voice; each video holds a few utterances (clips) with head motion, blinks and a mouth that follows the audio. Settings come from the `synth` section of --params (seed, identities, test_identities, videos_per_identity, clips_per_video, clip lengths, size, encoding, workers).

    Writes OUT/videos/ID.mp4 (H.264 + AAC, 25 fps, 22050 Hz audio), OUT/vox-metadata.csv (one row per clip, urls relative to the CSV) and OUT/groundtruth/ID.npz (per-frame landmarks, mouth opening, blink, head pose).

    The same seed gives the same CSV, ground truth, frames and audio samples.
    """
    cfg = load_section(params, "synth", SynthConfig)
    ffmpeg_binary()
    check_output_dir(out, "synth")
    total = len(plan_videos(cfg))
    began = time.perf_counter()
    with replace_output_dir(out, "synth") as work, progress_bar() as bar:
        task = bar.add_task("synth", total=total)
        result = synthesize(cfg, work, lambda: bar.advance(task))
    seconds = time.perf_counter() - began
    summary(
        f"synth: {result.videos} videos, {result.clips} clips ({result.train_clips} train / "
        f"{result.test_clips} test), {result.identities} identities, {result.frames} frames "
        f"in {seconds:.1f} s"
    )
