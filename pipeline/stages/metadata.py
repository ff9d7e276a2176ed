"""``fomm metadata``: VoxCeleb clip metadata to one clean, de-duplicated clips table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fomm_core.errors import FommError
from fomm_core.outputs import check_output_file
from pipeline.cli_support import user_errors
from pipeline.metadata.build import build
from pipeline.metadata.config import MetadataConfig
from pipeline.metadata.tables import clips_table, rejects_table, write_table, written_by_metadata
from pipeline.params import DEFAULT_PARAMS, load_section
from pipeline.progress import summary

__all__ = ["MetadataConfig", "command"]


@user_errors
def command(
    inputs: Optional[List[Path]] = typer.Argument(
        None, metavar="[INPUT]...", show_default=False,
        help="vox-metadata.csv-style CSV files, VoxCeleb txt annotation folders (txt/ or its "
        "parent) or zips of them; several are concatenated. Default: metadata.input in params.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Clips table (Parquet). Default: metadata.out in params "
        "(artifacts/metadata/clips.parquet).", show_default=False,
    ),
    rejects: Optional[Path] = typer.Option(
        None, "--rejects", help="Rejected rows with reason codes (Parquet). Default: "
        "rejects.parquet beside --out.", show_default=False,
    ),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml; its 'metadata' section is read."),
) -> None:
    """Parse clip metadata into a clips table and a rejects table.

    INPUT: the published vox-metadata.csv format (optional url column),
    or VoxCeleb1/2 txt annotations: a txt/ tree, its parent, or a zip.
    A txt file is one clip: the union box over its frames.
    Bad ids or numbers, empty or out-of-frame boxes, clips shorter than
    min_frames, duplicates and conflicting boxes go to the rejects table,
    each with a reason code. Boxes reaching past the frame are clamped
    (box_policy: clip) or rejected (box_policy: drop).
    """
    config = load_section(params, "metadata", MetadataConfig)
    sources = list(inputs) if inputs else [Path(config.input)]
    out_path = out if out is not None else Path(config.out)
    rejects_path = rejects if rejects is not None else out_path.with_name("rejects.parquet")
    if out_path.resolve() == rejects_path.resolve():
        raise FommError(f"--out and --rejects are both {out_path}; give them different paths")
    for path, flag in ((out_path, "--out"), (rejects_path, "--rejects")):
        if path.is_dir():
            raise FommError(f"{path} is a directory; --out/--rejects take a .parquet file path")
        check_output_file(path, "metadata", sources, is_ours=written_by_metadata, flag=flag)
    result = build(sources, config)
    write_table(rejects_table(result.rejects), rejects_path)
    write_table(clips_table(result.clips, out_path.parent), out_path)
    summary(result.summary())
