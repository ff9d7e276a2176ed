"""``fomm profile``: switch params.yaml to a named model/losses/train configuration."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline import profiles
from pipeline.cli_support import user_errors
from pipeline.params import DEFAULT_PARAMS
from pipeline.progress import summary


@user_errors
def command(
    name: str = typer.Argument(None, help="Profile to apply, e.g. vox-256 or vox-adv-256; omit to list them."),
    params: Path = typer.Option(DEFAULT_PARAMS, "--params", help="params.yaml to rewrite in place."),
) -> None:
    """Replace the model, losses and train sections of params.yaml with a named profile.

    vox-256 and vox-adv-256 are the FOMM paper's settings. Other sections are kept as they
    are (comments included); `git diff params.yaml` shows the change and `dvc repro` re-runs
    training and what follows it.
    """
    if name is None:
        for item in profiles.available():
            typer.echo(f"{item}\t{profiles.profile_path(item)}")
        return
    sections = profiles.apply_profile(name, params)
    summary(f"{params}: {', '.join(sections)} sections set to profile {name}")
