"""MLflow tracking of the training and evaluation stages, in a local sqlite store.

Where the store lives: ``$FOMM_MLFLOW_DIR`` if set (or an explicit ``root``), else
``<project>/artifacts`` where ``<project>`` is ``$DVC_ROOT`` when DVC runs the stage, else the
current directory. DVC sets ``DVC_ROOT`` for every stage it runs, and for ``dvc exp run
--queue/--temp`` it points it at the *original* repository, not the temporary copy the
experiment runs in, so queued experiments land in the same store as workspace runs
(sqlite serialises the writes). The store is ``<root>/mlflow.db`` with artifacts in
``<root>/mlartifacts/<experiment>``, recorded as ``fomm-store:`` locations relative to the
store (:mod:`pipeline.mlflow_store`), so a copied project is self-contained.

How runs are organised, so that the UI compares like with like:

* one experiment per model family: ``fomm`` (train, evaluate) and ``talker``
  (train-syncer, train-talker, evaluate-talker), tagged as classic ML experiments;
* run names say what ran: ``train exp-3f2a1 num_kp=10 lr_generator=0.0005`` (the stage, the
  DVC experiment name or the git short hash, key params);
* a run that writes a model file tags it with its SHA-256; a run that reads one records the
  producing run, and an evaluation becomes a child (``mlflow.parentRunId``) of the training
  run whose output it scored;
* trained models are logged as pyfunc models (:mod:`pipeline.mlflow_models`, with signature
  and input example) and registered as ``fomm-fomm`` and ``fomm-talker``, one version per
  training run.

Only this module and its ``mlflow_*`` siblings import mlflow. Telemetry and other network
features are switched off, so nothing waits on the internet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from fomm_core.digest import sha256_of_file
from fomm_core.errors import FommError
from fomm_core.training.logger import NullLogger, TrainingLogger

ENV_DIR = "FOMM_MLFLOW_DIR"
DB_NAME = "mlflow.db"
ARTIFACTS = "mlartifacts"
EXPERIMENTS = {"train": "fomm", "evaluate": "fomm",
               "train-syncer": "talker", "train-talker": "talker", "evaluate-talker": "talker"}
EXPERIMENT = EXPERIMENTS["train"]  # the FOMM family's experiment
REGISTERED_MODELS = {"fomm": "fomm-fomm", "talker": "fomm-talker"}
CLASSIC_ML = {"mlflow.experimentKind": "custom_model_development"}  # the UI's classic view, not GenAI
KIND_TAG = "fomm.kind"
OUTPUT_TAG = "fomm.output_sha256"  # the SHA-256 of the model file a run wrote
PARENT_TAG = "mlflow.parentRunId"
MODEL_CODE = Path(__file__).resolve().parent / "mlflow_models"
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false",
    "MLFLOW_ENABLE_MCP_TOOL_DISCOVERY": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # stage output stays one summary line
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
    return f"sqlite:///{mlflow_dir(root) / DB_NAME}"


# ---------------------------------------------------------------- opening the store


@dataclass
class Store:
    """An opened tracking store: its folder and an ``MlflowClient`` on it."""

    folder: Path
    client: Any  # mlflow.tracking.MlflowClient

    @property
    def uri(self) -> str:
        return tracking_uri(self.folder)

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created on first use with a store-relative artifact location."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=store_uri(f"{ARTIFACTS}/{name}"),
                                                 tags=CLASSIC_ML)
        except MlflowException:  # created meanwhile by a concurrent run (queued experiments)
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def producer_run(self, sha256: str) -> str | None:
        """The latest run that wrote a file with this SHA-256 (any experiment), or None."""
        ids = [e.experiment_id for e in self.client.search_experiments()]
        runs = self.client.search_runs(ids, filter_string=f"tags.`{OUTPUT_TAG}` = '{sha256}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None


def store_uri(relative: str) -> str:
    """A location relative to the store; imported only once mlflow is, which loads the scheme's plugin."""
    import mlflow  # noqa: F401  (registers the fomm-store entry point before pipeline.mlflow_store is imported)
    from pipeline.mlflow_store import store_uri as relative_uri

    return relative_uri(relative)


def store_exists(root: str | os.PathLike | None = None) -> bool:
    return (mlflow_dir(root) / DB_NAME).is_file()


def _check_database(db: Path) -> None:
    """One line instead of MLflow's chained tracebacks for a damaged or foreign ``mlflow.db``.

    ``PRAGMA quick_check`` reads the whole file: damage in the middle would otherwise surface
    only when a metric lands on that page, mid-training.
    """
    hint = f"move it aside (a new store is created), point --mlflow-dir / ${ENV_DIR} elsewhere, or pass --no-mlflow"
    if not os.access(db, os.R_OK | os.W_OK):
        raise FommError(f"{db}: the MLflow store is not readable and writable; fix its permissions, or {hint}")
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            verdict = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        verdict, tables = str(exc), set()
    if verdict != "ok":
        raise FommError(f"{db}: the MLflow store is damaged ({verdict.splitlines()[-1].strip()}); {hint}")
    if tables and not {"alembic_version", "experiments", "runs"} <= tables:
        raise FommError(f"{db}: an SQLite file but not an MLflow store; {hint}")


def open_store(root: str | os.PathLike | None = None) -> Store:
    """The project's store, created when absent; :class:`FommError` (one line) when it is unusable.

    Call it before any long work, so a corrupt or unwritable store stops a stage at once.
    Also makes it the process's global tracking URI (model logging and ``models:/`` loading
    go through MLflow's global state).
    """
    offline_environment()
    folder = mlflow_dir(root)
    db = folder / DB_NAME
    if db.exists():
        _check_database(db)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FommError(f"{folder}: cannot create the MLflow store folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise FommError(f"{folder}: the MLflow store folder is not writable; point --mlflow-dir / ${ENV_DIR} elsewhere")
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(folder)
    try:
        if not db.exists():
            with _quiet_mlflow():
                _create_database(uri)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # runs MLflow's schema checks now, not mid-training
    except Exception as exc:  # sqlalchemy/alembic/MlflowException: anything that makes the store unusable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FommError(f"{db}: MLflow cannot use this store ({first}); move it aside or run "
                        f"`mlflow db upgrade {uri}` if it was written by an older MLflow") from None
    mlflow.set_tracking_uri(uri)
    return Store(folder, client)


def _create_database(uri: str) -> None:
    """A new store whose default experiment also keeps its artifacts relative to the store."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, store_uri(ARTIFACTS))
    store.engine.dispose()


def client(root: str | os.PathLike | None = None):
    """An ``MlflowClient`` on the project's store (see :func:`open_store`)."""
    return open_store(root).client


# ---------------------------------------------------------------- naming and linking runs


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


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = result.stdout.strip()
    return out if result.returncode == 0 and out else None


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the project, or None outside a git checkout."""
    return _git("rev-parse", "HEAD")


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


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_name(kind: str, key_params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None) -> str:
    """``<stage> <DVC experiment or git short hash> k=v ...``: what ran, readable in the runs list."""
    tags = tags if tags is not None else default_tags()
    label = tags.get("dvc_exp_name") or (tags["git_commit"][:7] if tags.get("git_commit") else "no-git")
    return " ".join([kind, label, *(f"{k}={_short(v)}" for k, v in (key_params or {}).items())])


# ---------------------------------------------------------------- runs


class MlflowLogger:
    """:class:`TrainingLogger` writing to one MLflow run through ``MlflowClient``."""

    def __init__(self, store: Store, run_id: str, family: str):
        self.store = store
        self.client = store.client
        self.run_id = run_id
        self.family = family

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

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def mark_output(self, path: str | os.PathLike) -> str:
        """Tag the model file this run wrote, so later runs that read it can link back here."""
        sha = sha256_of_file(path)
        self.set_tags({OUTPUT_TAG: sha})
        return sha

    def log_model(self, code: str, artifacts: Mapping[str, str | os.PathLike], signature, input_example,
                  description: str) -> Any:
        """Log a pyfunc model (models from code) into this run and register it; the model version."""
        import mlflow

        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=self.run_id), _quiet_mlflow():
            library = Path(tmp) / "fomm_core"  # shipped with the model: it loads without the project
            shutil.copytree(Path(__file__).resolve().parents[1] / "fomm_core", library,
                            ignore=shutil.ignore_patterns("__pycache__"))
            info = mlflow.pyfunc.log_model(
                name=self.family, python_model=str(MODEL_CODE / code),
                artifacts={k: str(Path(v).resolve()) for k, v in artifacts.items()},
                code_paths=[str(library)], signature=signature, input_example=input_example,
                pip_requirements=_requirements(), registered_model_name=REGISTERED_MODELS[self.family],
                await_registration_for=0, metadata={"description": description})
        version = info.registered_model_version
        if version is not None:
            self.set_tags({"fomm.registered_model": f"models:/{REGISTERED_MODELS[self.family]}/{version}"})
        return version


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's INFO lines (new tables, input example checks) would bury the stage's own output."""
    import logging

    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    mlflow_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        mlflow_log.setLevel(level)


def _requirements() -> list[str]:
    """What the logged models import, at the versions that logged them (torch's local tag dropped)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in ("torch", "numpy", "scipy", "opencv-python-headless", "mlflow"):
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


@contextlib.contextmanager
def tracked_run(kind: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None, *,
                enabled: bool = True, root: str | os.PathLike | None = None,
                key_params: Mapping[str, Any] | None = None, inputs: Mapping[str, str | os.PathLike] | None = None,
                evaluates: str | None = None, store: Store | None = None) -> Iterator[TrainingLogger]:
    """An MLflow run of stage ``kind`` ('train', 'evaluate'...) with flattened ``params`` and tags.

    ``inputs`` names the model files the stage reads; each is recorded with its SHA-256 and
    the run that wrote it (``fomm.input.<name>.run``). ``evaluates`` names the input this run
    scores: its producing run becomes the parent. Yields a :class:`TrainingLogger`
    (an :class:`MlflowLogger`); the run ends FINISHED, KILLED (interrupted) or FAILED. With
    ``enabled=False`` yields a :class:`NullLogger` and touches nothing.
    """
    if not enabled:
        yield NullLogger()
        return
    store = store or open_store(root)
    family = EXPERIMENTS[kind]
    exp = store.experiment_id(family)
    all_tags = {KIND_TAG: kind, **default_tags(), **(tags or {})}
    for name, path in (inputs or {}).items():
        sha = sha256_of_file(path)
        all_tags[f"fomm.input.{name}.sha256"] = sha
        producer = store.producer_run(sha)
        if producer is not None:
            all_tags[f"fomm.input.{name}.run"] = producer
            if name == evaluates and store.client.get_run(producer).info.experiment_id == exp:
                all_tags[PARENT_TAG] = producer
    run = store.client.create_run(exp, tags=all_tags, run_name=run_name(kind, key_params, all_tags))
    logger = MlflowLogger(store, run.info.run_id, family)
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
        store.client.set_terminated(run.info.run_id, status=status)


def mark_output(logger: TrainingLogger, path: str | os.PathLike) -> None:
    """:meth:`MlflowLogger.mark_output` when tracking is on."""
    if isinstance(logger, MlflowLogger):
        logger.mark_output(path)


# ---------------------------------------------------------------- the logged models


def _example_image(size: int, phase: float = 0.0) -> np.ndarray:
    """A small deterministic RGB test card: gradients and a disc (input examples stay tiny)."""
    y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    disc = ((x - 0.5 - 0.1 * np.sin(phase)) ** 2 + (y - 0.5) ** 2 < 0.08).astype(np.float64)
    rgb = np.stack([x, y, 0.3 + 0.5 * disc], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def log_fomm_model(logger: TrainingLogger, checkpoint: Path) -> Any:
    """The FOMM checkpoint as the pyfunc ``fomm`` model, registered as ``fomm-fomm``; its version.

    Input ``{"source": (H, W, 3) uint8, "driving": (N, H, W, 3) uint8}``, output (N, S, S, 3)
    uint8 frames (see ``pipeline/mlflow_models/fomm_animator.py``). Does nothing when
    tracking is off.
    """
    if not isinstance(logger, MlflowLogger):
        return None
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

    uint8 = np.dtype(np.uint8)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(uint8, (-1, -1, 3), "source"), TensorSpec(uint8, (-1, -1, -1, 3), "driving")]),
        outputs=Schema([TensorSpec(uint8, (-1, -1, -1, 3))]),
        params=ParamSchema([ParamSpec("relative", "boolean", True), ParamSpec("adapt_scale", "boolean", True)]),
    )
    example = {"source": _example_image(32), "driving": _example_image(32, 1.0)[None]}
    return logger.log_model("fomm_animator.py", {"checkpoint": checkpoint}, signature, example,
                            "FOMM: animate a source image with driving frames")


def log_talker_model(logger: TrainingLogger, talker: Path, fomm: Path) -> Any:
    """The talker and its FOMM renderer as the pyfunc ``talker`` model, registered as ``fomm-talker``.

    Input ``{"image": (H, W, 3) uint8, "audio": (samples,) float32 at 16 kHz}``, output
    (N, S, S, 3) uint8 frames at 25 fps (see ``pipeline/mlflow_models/talker.py``).
    """
    if not isinstance(logger, MlflowLogger):
        return None
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, 3), "image"),
                       TensorSpec(np.dtype(np.float32), (-1,), "audio")]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
    )
    t = np.arange(1600, dtype=np.float32) / 16000  # 0.1 s: a few frames
    example = {"image": _example_image(32), "audio": (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)}
    return logger.log_model("talker.py", {"talker": talker, "fomm": fomm}, signature, example,
                            "Talker: a face image speaking 16 kHz audio")
