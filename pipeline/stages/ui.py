"""``fomm ui``: the MLflow UI over the project's local tracking store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from pipeline.cli_support import user_errors


def server_command(host: str, port: int, root: Path | None = None) -> list[str]:
    """``mlflow server`` on the sqlite store: one worker; the job runner is off (see tracking).

    New experiments keep their artifacts relative to the store (``fomm-store:``, see
    pipeline/mlflow_store.py), like the ones the stages create.
    """
    from pipeline import tracking

    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", tracking.tracking_uri(root),
        "--default-artifact-root", tracking.store_uri(tracking.ARTIFACTS),
        "--host", host, "--port", str(port), "--workers", "1",
    ]


def start_page(base: str, store) -> str:
    """The first experiment with runs (fomm, else talker) in the classic ML view, not the GenAI one."""
    for name in ("fomm", "talker"):
        experiment = store.client.get_experiment_by_name(name)
        if experiment is not None:
            return f"{base}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    return f"{base}/#/experiments?workflowType=machine_learning"


@user_errors
def command(
    port: int = typer.Option(5000, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface; keep 127.0.0.1 unless you know you need more."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
) -> None:
    """Browse training runs (params, loss curves, sample grids, checkpoints) in the MLflow UI.

    Serves the store the stages write (artifacts/mlflow.db) until Ctrl-C and prints the URL of
    the fomm experiment's runs in the classic ML view. Refuses when there is no store there.
    """
    from fomm_core.errors import FommError
    from pipeline import tracking

    if not 0 < port < 65536:
        raise FommError(f"--port {port}: not a TCP port (1..65535)")
    if not tracking.store_exists(mlflow_dir):
        raise FommError(f"no MLflow store at {tracking.mlflow_dir(mlflow_dir) / tracking.DB_NAME}; run a training "
                        f"stage first (dvc repro) or pass --mlflow-dir / set ${tracking.ENV_DIR}")
    store = tracking.open_store(mlflow_dir)  # one line for a corrupt store, before the server starts
    env = dict(os.environ, **tracking.offline_environment())
    cmd = server_command(host, port, mlflow_dir)
    url = start_page(f"http://{host}:{port}", store)
    print(f"MLflow UI at {url} (store {store.uri}); Ctrl-C to stop", flush=True)
    process = subprocess.Popen(cmd, env=env)
    stopping = []

    def stop(signum, frame):  # SIGTERM: shut the server down too instead of orphaning it
        stopping.append(signum)
        process.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        code = 0
        stopping.append(signal.SIGINT)
    finally:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        signal.signal(signal.SIGTERM, previous)
    if stopping:
        return
    if code != 0:
        raise FommError(f"mlflow server exited with code {code}; is port {port} already in use?")
