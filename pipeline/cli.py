"""The ``fomm`` command: one sub-command per pipeline stage."""

from __future__ import annotations

import typer

from .stages import (
    animate, crop, demo, download, evaluate, evaluate_talker, extract_keypoints, find_crops, metadata, profile, shard,
    synth, talk, train, train_syncer, train_talker, tubes, ui,
)

app = typer.Typer(
    help="VoxCeleb (or the built-in synthetic set) to a First Order Motion Model and an audio-driven talker.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Data stages
app.command("synth")(synth.command)
app.command("metadata")(metadata.command)
app.command("download")(download.command)
app.command("tubes")(tubes.command)
app.command("crop")(crop.command)
app.command("shard")(shard.command)
# First Order Motion Model
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("animate")(animate.command)
app.command("find-crops")(find_crops.command)
app.command("demo")(demo.command)
app.command("profile")(profile.command)
# Audio-driven talker
app.command("extract-keypoints")(extract_keypoints.command)
app.command("train-syncer")(train_syncer.command)
app.command("train-talker")(train_talker.command)
app.command("evaluate-talker")(evaluate_talker.command)
app.command("talk")(talk.command)
# Experiment tracking
app.command("ui")(ui.command)


def main() -> None:
    # Die with the process that started us (dvc repro, torchrun): an orphaned stage must
    # not keep writing outputs. In-process callers (tests, notebooks) do not get this.
    from .lifecycle import watch_parent

    watch_parent()
    app()
