"""MLflow tracking for training (and later evaluation) runs, in a local sqlite store.

Where the store lives: ``$FOMM_MLFLOW_DIR`` if set (or an explicit ``root``), else
``<project>/artifacts`` where ``<project>`` is ``$DVC_ROOT`` when DVC runs the stage, else the
current directory. DVC sets ``DVC_ROOT`` for every stage it runs, and for ``dvc exp run
--queue/--temp`` it points it at the *original* repository, not the temporary copy the
experiment runs in, so queued experiments land in the same store as workspace runs
(``mlflow.db`` is then shared; sqlite serialises the writes). The store is
``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlartifacts``.

This is the only module that imports mlflow. Telemetry and other network features are
switched off, so nothing waits on the internet.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from fomm_core.training.logger import NullLogger, TrainingLogger

EXPERIMENT = "fomm"
ENV_DIR = "FOMM_MLFLOW_DIR"
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false",
    "MLFLOW_ENABLE_MCP_TOOL_DISCOVERY": "false",
    "GIT_PYTHON_REFRESH": "quiet",
}
MAX_PARAM_BATCH = 100  # MLflow's limit of params per log_batch call
MAX_METRIC_BATCH = 1000


def offline_environment() -> dict[str, str]:
    """Set (without overriding the user's choices) the variables that keep MLflow offline."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in OFFLINE_ENV}


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def mlflow_dir(root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``mlflow.db`` and ``mlartifacts/`` (see the module docstring)."""
    if root:
        return Path(root).resolve()
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).resolve()
    return project_root() / "artifacts"


def tracking_uri(root: str | os.PathLike | None = None) -> str:
    return f"sqlite:///{mlflow_dir(root) / 'mlflow.db'}"


def artifact_root(root: str | os.PathLike | None = None) -> Path:
    return mlflow_dir(root) / "mlartifacts"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{'train': {'augment': {'hue': 0.1}}}`` -> ``{'train.augment.hue': '0.1'}``."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = "[" + ", ".join(str(v) for v in value) + "]"
        else:
            flat[name] = str(value)
    return flat


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """``git rev-parse HEAD`` of the project, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or project_root(), capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def default_tags() -> dict[str, str]:
    """Git commit and DVC experiment name, when known."""
    tags = {}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


class MlflowLogger:
    """:class:`TrainingLogger` writing to one MLflow run through ``MlflowClient``."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(key, float(value), stamp, int(step)) for key, value in metrics.items()]
        for i in range(0, len(items), MAX_METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i:i + MAX_METRIC_BATCH], synchronous=True)

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"log_image expects an H x W x 3 uint8 array, got {image.dtype} {image.shape}")
        # key + step: the MLflow UI shows these as a stepped image series.
        self.client.log_image(self.run_id, image, key=name, step=int(step), synchronous=True)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAM_BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + MAX_PARAM_BATCH], synchronous=True)


def check_store(root: str | os.PathLike | None = None) -> None:
    """One line instead of MLflow's tracebacks when the store's sqlite file is damaged.

    Called before a stage builds its models or reads its data, so a broken store stops a
    run before any work. ``PRAGMA quick_check`` reads the whole file: damage in the middle
    would otherwise surface only when a metric lands on that page, mid-training.
    """
    import sqlite3

    from fomm_core.errors import FommError

    db = mlflow_dir(root) / "mlflow.db"
    if not db.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
            verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        verdict = str(exc)
    if verdict != "ok":
        raise FommError(f"{db}: the MLflow store is damaged ({verdict.splitlines()[-1].strip()}); move it away to "
                        "start a new store, point --mlflow-dir elsewhere, or pass --no-mlflow")


def client(root: str | os.PathLike | None = None):
    """An ``MlflowClient`` on the project's store (created on first use)."""
    offline_environment()
    from mlflow.tracking import MlflowClient

    mlflow_dir(root).mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=tracking_uri(root))


def experiment_id(mlflow_client, root: str | os.PathLike | None = None, name: str = EXPERIMENT) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = artifact_root(root)
    location.mkdir(parents=True, exist_ok=True)
    try:
        return mlflow_client.create_experiment(name, artifact_location=location.as_uri())
    except Exception:  # created meanwhile by a concurrent run (queued experiments)
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextlib.contextmanager
def tracked_run(kind: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                enabled: bool = True, root: str | os.PathLike | None = None,
                run_name: str | None = None) -> Iterator[TrainingLogger]:
    """An MLflow run of ``kind`` ('train', 'evaluate'...) with flattened ``params`` and tags.

    Yields a :class:`TrainingLogger`; the run ends FINISHED, KILLED (interrupted) or FAILED.
    With ``enabled=False`` yields a :class:`NullLogger` and touches nothing.
    """
    if not enabled:
        yield NullLogger()
        return
    mlflow_client = client(root)
    exp = experiment_id(mlflow_client, root)
    all_tags = {"fomm.kind": kind, **default_tags(), **(tags or {})}
    run = mlflow_client.create_run(exp, tags=all_tags, run_name=run_name)
    logger = MlflowLogger(mlflow_client, run.info.run_id)
    status = "FAILED"
    try:
        logger.log_params(flatten(params))
        yield logger
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    except BaseException as exc:
        status = "KILLED" if type(exc).__name__ == "TrainingInterrupted" else "FAILED"
        raise
    finally:
        mlflow_client.set_terminated(run.info.run_id, status=status)
