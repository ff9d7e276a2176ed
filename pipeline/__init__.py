"""The DVC pipeline: one Typer command per stage, each reading its own params.yaml section."""
