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
    """``mlflow server`` on the sqlite store: one worker; the job runner is off (see tracking)."""
    from pipeline import tracking

    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", tracking.tracking_uri(root),
        "--default-artifact-root", tracking.artifact_root(root).as_uri(),
        "--host", host, "--port", str(port), "--workers", "1",
    ]


@user_errors
def command(
    port: int = typer.Option(5000, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface; keep 127.0.0.1 unless you know you need more."),
    mlflow_dir: Path = typer.Option(None, "--mlflow-dir", help="MLflow store folder (default $FOMM_MLFLOW_DIR, else <project>/artifacts)."),
) -> None:
    """Browse training runs (params, loss curves, sample grids, checkpoints) in the MLflow UI.

    Serves the store `fomm train` writes (artifacts/mlflow.db) until Ctrl-C.
    """
    from fomm_core.errors import FommError
    from pipeline import tracking

    if not 0 < port < 65536:
        raise FommError(f"--port {port}: not a TCP port (1..65535)")
    env = dict(os.environ, **tracking.offline_environment())
    tracking.mlflow_dir(mlflow_dir).mkdir(parents=True, exist_ok=True)
    tracking.artifact_root(mlflow_dir).mkdir(parents=True, exist_ok=True)
    cmd = server_command(host, port, mlflow_dir)
    print(f"MLflow UI at http://{host}:{port} (store {tracking.tracking_uri(mlflow_dir)}); Ctrl-C to stop", flush=True)
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
