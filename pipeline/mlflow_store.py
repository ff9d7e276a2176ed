"""``fomm-store:`` artifact URIs: MLflow artifact locations relative to the tracking store.

MLflow records every artifact location in the database as it was when the experiment was
created: a plain folder becomes an absolute ``file://`` URL, so a copied or moved project
keeps reading and writing the *original's* artifacts. The project's experiments are
instead created with ``fomm-store:mlartifacts/<experiment>``, which this repository
resolves against the folder of the sqlite database being used: the client's tracking URI,
the tracking server's backend store (``mlflow server``/``fomm ui``), or the global
tracking URI, in that order.

MLflow finds the scheme through the ``mlflow.artifact_repository`` entry point declared in
pyproject.toml, so plain ``mlflow ui`` and ``mlflow.pyfunc.load_model`` understand it too
wherever the project is installed. Import this module only after ``mlflow`` (MLflow loads
it from its artifact-repository registry; importing it first makes that registration
circular).
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

SCHEME = "fomm-store"
SERVER_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"  # set by `mlflow server` for its workers


def store_uri(relative: str) -> str:
    """``fomm-store:<relative>`` for a POSIX path relative to the store folder."""
    return f"{SCHEME}:{relative}"


def store_folder(tracking_uri: str | None) -> Path:
    """The folder holding the sqlite database of ``tracking_uri`` (or the server's / global one)."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:"):
        tracking_uri = os.environ.get(SERVER_STORE_ENV) or tracking_uri
    if not tracking_uri or not tracking_uri.startswith("sqlite:"):
        import mlflow

        tracking_uri = mlflow.get_tracking_uri()
    if not tracking_uri.startswith("sqlite:///"):
        raise MlflowException(f"{SCHEME}: artifact locations are relative to a sqlite tracking store, but the "
                              f"tracking URI is {tracking_uri!r}; use sqlite:///<project>/artifacts/mlflow.db")
    return Path(tracking_uri[len("sqlite:///"):]).parent


def local_path(artifact_uri: str, tracking_uri: str | None) -> Path:
    relative = artifact_uri[len(SCHEME) + 1:].lstrip("/")
    parts = posixpath.normpath(relative).split("/")
    if not relative or parts[0] == "..":
        raise MlflowException(f"{artifact_uri!r}: a {SCHEME}: location must stay inside the store folder")
    return store_folder(tracking_uri).joinpath(*parts).absolute()


class StoreArtifactRepository(LocalArtifactRepository):
    """A :class:`LocalArtifactRepository` on ``<store folder>/<relative path>``."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        super().__init__(local_path(artifact_uri, tracking_uri).as_uri(), tracking_uri, registry_uri)
