"""The ``fomm`` command: one sub-command per pipeline stage.

A stage module is imported only when its command runs (or help lists them all): `fomm
metadata` must not pay for torch (~1 s and ~280 MB per process), and the data stages run
in many processes at once.
"""

from __future__ import annotations

import importlib
import sys
from typing import Iterable

import typer

# command name -> module under pipeline.stages, in the order help lists them
COMMANDS = {
    # Data stages
    "synth": "synth",
    "metadata": "metadata",
    "download": "download",
    "tubes": "tubes",
    "crop": "crop",
    "shard": "shard",
    # First Order Motion Model
    "train": "train",
    "evaluate": "evaluate",
    "animate": "animate",
    "find-crops": "find_crops",
    "demo": "demo",
    "profile": "profile",
    "import-checkpoint": "import_checkpoint",
    "export-checkpoint": "export_checkpoint",
    # Audio-driven talker
    "extract-keypoints": "extract_keypoints",
    "train-syncer": "train_syncer",
    "train-talker": "train_talker",
    "evaluate-talker": "evaluate_talker",
    "talk": "talk",
    # Experiment tracking
    "ui": "ui",
}


def build_app(names: Iterable[str] = COMMANDS) -> typer.Typer:
    """A Typer app with the commands ``names`` (importing only their stage modules)."""
    app = typer.Typer(
        help="VoxCeleb (or the built-in synthetic set) to a First Order Motion Model and an audio-driven talker.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _group() -> None:
        """A group even with one command registered, so `fomm NAME ...` keeps its NAME."""

    for name in names:
        module = importlib.import_module(f"pipeline.stages.{COMMANDS[name]}")
        app.command(name)(module.command)
    return app


def command_named(argv: list[str]) -> str | None:
    """The sub-command `fomm ARGV` runs, when ARGV starts with one (otherwise help or an error)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def __getattr__(name: str):
    # `from pipeline.cli import app` (in-process callers) gets every command.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main() -> None:
    # Die with the process that started us (dvc repro, torchrun): an orphaned stage must
    # not keep writing outputs. In-process callers (tests, notebooks) do not get this.
    from .lifecycle import watch_parent

    watch_parent()
    name = command_named(sys.argv[1:])
    build_app([name] if name else COMMANDS)()
