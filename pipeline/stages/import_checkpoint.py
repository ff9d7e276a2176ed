"""``fomm import-checkpoint``: a published FOMM checkpoint (``vox-adv-cpk.pth.tar`` + its YAML) as a fomm checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from fomm_core.official import import_checkpoint, is_imported_checkpoint
from fomm_core.outputs import check_output_file
from pipeline.cli_support import user_errors
from pipeline.progress import summary


@user_errors
def command(
    source: Path = typer.Argument(..., help="The original code's checkpoint, e.g. vox-adv-cpk.pth.tar."),
    config: Path = typer.Option(..., "--config", help="Its YAML from the original repository, e.g. vox-adv-256.yaml."),
    out: Path = typer.Option(..., "--out", help="The fomm checkpoint to write (replaces only an earlier import)."),
) -> None:
    """Convert a published First Order Motion Model checkpoint for every fomm command.

    The tensors are renamed to this project's modules and checked name by name and shape by
    shape against the model the YAML describes; the model keeps the original code's
    conventions, so keypoints and frames equal the original's. Loads with weights_only (a
    file that would run code is refused). Optimizer states are not kept: fine-tune with
    train.init_from.
    """
    check_output_file(out, "import-checkpoint", (source, config), is_ours=is_imported_checkpoint)
    imported = import_checkpoint(source, config, out)
    epoch = f", epoch {imported.epoch}" if imported.epoch is not None else ""
    summary(f"import-checkpoint: {source.name}{epoch} with {config.name} -> {out}: {', '.join(imported.networks)}; "
            f"{imported.model_config.num_kp} keypoints, trained at {imported.frame_size} px, FOMM weights "
            f"{imported.fomm_sha256[:12]}")
