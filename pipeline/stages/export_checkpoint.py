"""``fomm export-checkpoint``: a fomm checkpoint in the original FOMM code's layout, with its YAML."""

from __future__ import annotations

from pathlib import Path

import typer

from fomm_core.errors import FommError
from fomm_core.official import export_checkpoint, is_exported_checkpoint, is_exported_config
from fomm_core.outputs import check_output_file
from pipeline.cli_support import user_errors
from pipeline.progress import summary


@user_errors
def command(
    checkpoint: Path = typer.Argument(..., help="A checkpoint of `fomm train` or `fomm import-checkpoint`."),
    out: Path = typer.Option(..., "--out", help="The original-layout checkpoint to write, e.g. mine-cpk.pth.tar."),
    config_out: Path = typer.Option(..., "--config-out", help="The original-style YAML to write next to it."),
) -> None:
    """Write a checkpoint the original first-order-model code loads with strict=True.

    Same tensors under the original names (plus the anti-alias kernels it stores), the Adam
    states re-ordered to its parameters, its `epoch`, and a YAML with the model and training
    numbers. A model using a convention the original code cannot express (this project's
    default bilinear downsampling or cropped heatmap grid) is refused.
    """
    if out.absolute() == config_out.absolute():
        raise FommError(f"--out and --config-out are the same file {out}; give two paths")
    check_output_file(out, "export-checkpoint", (checkpoint,), is_ours=is_exported_checkpoint)
    check_output_file(config_out, "export-checkpoint", (checkpoint,), is_ours=is_exported_config,
                      flag="--config-out")
    networks = export_checkpoint(checkpoint, out, config_out)
    summary(f"export-checkpoint: {checkpoint} -> {out} ({', '.join(networks)}) and {config_out}")
