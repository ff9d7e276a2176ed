"""The ``fomm`` command: one sub-command per pipeline stage."""

from __future__ import annotations

import typer

from .stages import animate, crop, download, evaluate, metadata, shard, synth, train, ui

app = typer.Typer(
    help="VoxCeleb (or the built-in synthetic set) to First Order Motion Model training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("synth")(synth.command)
app.command("metadata")(metadata.command)
app.command("download")(download.command)
app.command("crop")(crop.command)
app.command("shard")(shard.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("animate")(animate.command)
app.command("ui")(ui.command)


def main() -> None:
    app()
