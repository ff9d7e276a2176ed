"""MLflow tracking of `fomm train` runs and the `fomm ui` server, against real sqlite stores."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import build_shards, cli, env, params_yaml
from fomm_core.training import shards_fingerprint
from pipeline import tracking


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny CLI training run with the GAN on, tracked in a temp store."""
    shards = build_shards(tmp_path_factory.getbasetemp())
    project = tmp_path_factory.mktemp("tracked")
    params_yaml(project / "params.yaml", gan=1.0, epochs=1, max_steps=2, image_log_every=2)
    store = project / "store"
    result = cli(["train", "--shards", str(shards)], project, env=dict(env(), FOMM_MLFLOW_DIR=str(store),
                                                                        DVC_EXP_NAME="tiny-exp"))
    assert result.returncode == 0, result.stderr
    return project, shards, store, result


def only_run(store: Path):
    client = tracking.client(store)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_training_run_is_tracked_with_params_metrics_tags_and_files(trained):
    project, shards, store, result = trained
    assert "train: 2 steps" in result.stdout
    assert (store / "mlflow.db").is_file() and not (project / "artifacts" / "mlflow.db").exists()
    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.batch_size"] == "2" and params["losses.generator_gan"] == "1.0"
    assert params["model.num_kp"] == "5" and params["train.augment.hue"] == "0.1"
    assert params["model.discriminator.scales"] == "[1.0]"
    tags = run.data.tags
    assert tags["shards_sha256"] == shards_fingerprint(shards)
    assert tags["dvc_exp_name"] == "tiny-exp" and tags["fomm.kind"] == "train"
    assert tags["vgg.perceptual_backbone"] == "random"
    history = client.get_metric_history(run.info.run_id, "loss/perceptual")
    assert [m.step for m in history] == [1, 2] and all(np.isfinite(m.value) for m in history)
    for key in ("loss/discriminator_gan", "loss/feature_matching", "lr/generator", "lr/discriminator",
                "throughput/samples_per_second"):
        assert key in run.data.metrics, key
    assert run.data.metrics["lr/kp_detector"] == pytest.approx(2e-4)
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint.pt", "train_metrics.json", "images"} <= files
    images = [f.path for f in client.list_artifacts(run.info.run_id, "images") if f.path.endswith(".png")]
    assert any("step+1" in p for p in images) and any("step+2" in p for p in images)
    local = Path(client.download_artifacts(run.info.run_id, "train_metrics.json", str(project)))
    assert json.loads(local.read_text())["steps"] == 2


def test_fingerprint_changes_with_the_shards(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "index.parquet").write_bytes(b"index")
    (tmp_path / "shards" / "shard-00000.parquet").write_bytes(b"x" * 10)
    first = shards_fingerprint(tmp_path)
    (tmp_path / "shards" / "shard-00000.parquet").write_bytes(b"x" * 11)
    assert shards_fingerprint(tmp_path) != first


def test_store_location_follows_env_and_dvc_root(tmp_path, monkeypatch):
    monkeypatch.delenv(tracking.ENV_DIR, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    monkeypatch.chdir(tmp_path)
    assert tracking.mlflow_dir() == tmp_path / "repo" / "artifacts"
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/repo/artifacts/mlflow.db"
    monkeypatch.setenv(tracking.ENV_DIR, str(tmp_path / "elsewhere"))
    assert tracking.mlflow_dir() == tmp_path / "elsewhere"
    assert tracking.mlflow_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert tracking.flatten({"a": {"b": [1, 2], "c": None}}) == {"a.b": "[1, 2]", "a.c": "None"}


def test_failed_run_is_marked_failed_and_disabled_run_writes_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with tracking.tracked_run("evaluate", {"x": 1}, root=tmp_path / "s") as logger:
            logger.log_metrics({"m": 1.5}, step=3)
            raise RuntimeError("boom")
    client, run = only_run(tmp_path / "s")
    assert run.info.status == "FAILED" and run.data.metrics["m"] == 1.5 and run.data.params["x"] == "1"
    with tracking.tracked_run("train", {"x": 1}, enabled=False, root=tmp_path / "off") as logger:
        logger.log_metrics({"m": 1.0}, step=1)
    assert not (tmp_path / "off").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_serves_the_tracked_run(trained):
    project, _, store, _ = trained
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "ui", "--port", str(port), "--mlflow-dir", str(store)],
                            cwd=project, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline, experiment = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, "fomm ui exited early"
            try:
                url = f"{base}/experiments/get-by-name?experiment_name={tracking.EXPERIMENT}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    experiment = json.load(response)["experiment"]
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert experiment is not None, "mlflow server did not come up"
        request = urllib.request.Request(
            f"{base}/runs/search", data=json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
        assert len(runs) == 1
        params = {p["key"]: p["value"] for p in runs[0]["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]}
        assert params["train.max_steps"] == "2" and np.isfinite(metrics["loss/perceptual"])
    finally:
        proc.terminate()  # fomm ui stops its mlflow server on SIGTERM
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
            out, _ = proc.communicate()
            pytest.fail(f"fomm ui did not stop on SIGTERM:\n{out}")
    assert f"http://127.0.0.1:{port}" in out and proc.returncode == 0
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"{base}/experiments/search", timeout=5)  # the server went down with it
