"""``fomm shard``: pack cropped clips into shard files for fast random access."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fomm_core.errors import FommError
from fomm_core.outputs import check_not_input, claim_output_dir
from pipeline.cli_support import user_errors
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import progress_bar, summary
from pipeline.shard.config import ShardConfig

BYTES_PER_MB = 1_000_000
COMMAND = "shard"
LEGACY_OUTPUT = ("index.parquet",)  # shard folders written before ownership markers


def _groundtruth_dir(value: str) -> Path | None:
    """The synth ``groundtruth/`` folder; the synth output folder holding it is accepted too."""
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise FommError(f"{path}: ground-truth folder not found; pass the synth stage's groundtruth/ folder")
    if (path / "groundtruth").is_dir():
        path = path / "groundtruth"
    return path


@user_errors
def command(
    clips_dir: Optional[Path] = typer.Argument(
        None, help="Crop stage output (manifest.parquet + clips). Default: shard.clips_dir."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output folder, written in place and resumable. Default: shard.out."),
    groundtruth: Optional[Path] = typer.Option(
        None, "--groundtruth",
        help="Synthetic ground-truth folder (synth output groundtruth/); adds gt_* arrays to the NPZs. "
             "Default: shard.groundtruth_dir."),
    part: Optional[str] = typer.Option(
        None, "--part", metavar="K/N",
        help="Do only shards K-1, K-1+N, ... of the plan (K from 1 to N), e.g. one job-array task per part on "
             "a shared filesystem. The run that finds every shard finished writes the index."),
    merge: bool = typer.Option(
        False, "--merge", help="Encode nothing: check every shard of the plan is finished and write the index."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml to read the shard section from."),
) -> None:
    """Pack the ok clips of the crop manifest into shards, in parallel over clips (shard.workers).

    Writes OUT/shards/shard-NNNNN.frames (a clip's encoded frames back to back, their offsets and
    the clips they hold), OUT/features/{partition}/{clip_id}.npz (16 kHz audio, 100 Hz log-mel,
    synthetic ground truth when given) and, last, OUT/index.parquet + OUT/index.cols (one row per
    clip). A killed or repeated run keeps every finished shard and clip and continues; the same
    input gives byte-identical output however many workers or parts made it.
    """
    # Deferred so `fomm --help` and the other stages do not pay for pyarrow/cv2/scipy.
    from concurrent.futures.process import BrokenProcessPool

    from pipeline.shard.build import plan_run, shard_clips
    from pipeline.shard.plan import Part

    cfg = load_section(params, "shard", ShardConfig)
    clips_path = clips_dir if clips_dir is not None else Path(cfg.clips_dir)
    out_path = out if out is not None else Path(cfg.out)
    gt_dir = _groundtruth_dir(str(groundtruth) if groundtruth is not None else cfg.groundtruth_dir)
    the_part = Part.parse(part) if part is not None else None
    if merge and the_part is not None:
        raise FommError("--merge and --part do not go together: --merge writes the index of all parts")
    inputs = [p for p in (clips_path, gt_dir) if p is not None]
    check_not_input(out_path, inputs)
    plan = plan_run(cfg, clips_path, the_part, merge)  # fails on bad input before anything is written
    out_path = claim_output_dir(out_path, COMMAND, inputs, legacy=LEGACY_OUTPUT)
    try:
        with progress_bar() as bar:
            task = bar.add_task("shard" if the_part is None else f"shard {the_part}", total=plan.clips)
            result = shard_clips(plan, cfg, out_path, gt_dir, advance=lambda n: bar.advance(task, n))
    except OSError as exc:  # disk full, permissions, a filesystem gone: the machine, not the data
        raise FommError(f"{exc.filename or out_path}: {exc.strerror or exc}; fix it and run again "
                        "(finished shards and clips are kept)") from None
    except BrokenProcessPool:
        raise FommError("an encoding worker died (killed, or out of memory?); run again with fewer "
                        "shard.workers (finished shards and clips are kept)") from None
    what = (f"{result.clips} clips, {result.frames} frames, {result.shards} shard{'s' * (result.shards != 1)}, "
            f"{result.bytes / BYTES_PER_MB:.1f} MB" if result.published
            else f"part {the_part}: {result.clips} clips in {result.shards} shards")
    summary(
        f"shard: {what}, {result.seconds:.1f} s ({result.encoded} clips encoded, {result.reused} kept)"
        + (f", {result.with_groundtruth} with ground truth" if result.published and gt_dir is not None else "")
        + (f", {result.skipped} not-ok rows skipped" if result.skipped else "")
        + ("" if result.published else
           f"; {result.missing} shards of other parts not finished: the last part (or fomm shard --merge) "
           "writes the index")
    )
