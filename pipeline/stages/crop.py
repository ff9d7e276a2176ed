"""Placeholder: replaced by the crop stage implementation."""

import typer


def command() -> None:
    """Not implemented yet."""
    raise typer.Exit(1)
