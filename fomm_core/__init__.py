"""First Order Motion Model core: models, losses, data loading, training and inference.

A plain library: nothing here imports DVC, MLflow or Typer, so it can be used from a
notebook or another project as is.
"""
