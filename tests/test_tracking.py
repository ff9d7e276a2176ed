"""MLflow tracking of the stages and the `fomm ui` server, against real sqlite stores.

One tiny CLI training run (GAN on, 2 steps) in a temp project whose store lives where the
stages put it by default (``<project>/artifacts``); the tests read that store back, load the
registered model through ``models:/``, evaluate the checkpoint, copy the whole project and
train in the copy, and break the store on purpose.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import build_shards, cli, env, params_yaml
from fomm_core.training import shards_fingerprint
from pipeline import tracking


def project_env(**extra: str) -> dict[str, str]:
    """The stages' environment with the store found from the working directory (no override)."""
    run_env = dict(env(), **extra)
    run_env.pop(tracking.ENV_DIR, None)
    run_env.pop("DVC_ROOT", None)
    return run_env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny CLI training run with the GAN on, tracked in <project>/artifacts."""
    shards = build_shards(tmp_path_factory.getbasetemp())
    project = tmp_path_factory.mktemp("tracked")
    params_yaml(project / "params.yaml", gan=1.0, epochs=1, max_steps=2, image_log_every=2)
    result = cli(["train", "--shards", str(shards)], project, env=project_env(DVC_EXP_NAME="tiny-exp"))
    assert result.returncode == 0, result.stderr
    return project, shards, project / "artifacts", result


def runs_of(store: Path, kind: str):
    client = tracking.client(store)
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()],
                                      f"tags.`{tracking.KIND_TAG}` = '{kind}'")


def test_training_run_is_tracked_with_params_metrics_tags_and_files(trained):
    project, shards, store, result = trained
    assert "train: 2 steps" in result.stdout
    assert "Downloading artifacts" not in result.stderr and "INFO mlflow" not in result.stderr
    client, [run] = runs_of(store, "train")
    assert client.get_experiment(run.info.experiment_id).name == "fomm"
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.info.run_name == "train tiny-exp num_kp=5 lr_generator=0.0002 batch_size=2 frame_size=64"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.batch_size"] == "2" and params["losses.generator_gan"] == "1.0"
    assert params["model.num_kp"] == "5" and params["train.augment.hue"] == "0.1"
    assert params["model.discriminator.scales"] == "[1.0]"
    tags = run.data.tags
    assert tags["shards_sha256"] == shards_fingerprint(shards)
    assert tags["dvc_exp_name"] == "tiny-exp" and tags["fomm.kind"] == "train"
    assert tags["vgg.perceptual_backbone"] == "random"
    checkpoint = project / "artifacts/train/checkpoint.pt"
    assert tags[tracking.OUTPUT_TAG] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    history = client.get_metric_history(run.info.run_id, "loss/perceptual")
    assert [m.step for m in history] == [1, 2] and all(np.isfinite(m.value) for m in history)
    for key in ("loss/discriminator_gan", "loss/feature_matching", "lr/generator", "lr/discriminator",
                "throughput/samples_per_second"):
        assert key in run.data.metrics, key
    assert run.data.metrics["lr/kp_detector"] == pytest.approx(2e-4)
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"train_metrics.json", "images"} <= files
    images = [f.path for f in client.list_artifacts(run.info.run_id, "images") if f.path.endswith(".png")]
    assert any("step+1" in p for p in images) and any("step+2" in p for p in images)
    local = Path(client.download_artifacts(run.info.run_id, "train_metrics.json", str(project)))
    assert json.loads(local.read_text())["steps"] == 2
    # The artifacts are recorded relative to the store and live inside it.
    assert run.info.artifact_uri.startswith("fomm-store:mlartifacts/fomm/")
    assert (store / "mlartifacts/fomm" / run.info.run_id / "artifacts/train_metrics.json").is_file()
    # DVC's copy of the numbers: no text, nothing that depends on where the project is.
    numbers = json.loads((project / "metrics/train.json").read_text())
    assert numbers["steps"] == 2 and "losses" in numbers and "perceptual_backbone" not in numbers


def test_registered_model_loads_from_models_uri_and_animates_one_frame(trained):
    """`models:/fomm-fomm/1` is the trained checkpoint: it animates exactly like the checkpoint itself."""
    import mlflow

    from fomm_core.checkpoint import load_inference_models
    from fomm_core.inference.animate import Animator, from_uint8_frames, to_uint8_frames

    project, _, store, _ = trained
    client, [run] = runs_of(store, "train")
    [version] = client.search_model_versions("name = 'fomm-fomm'")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    assert run.data.tags["fomm.registered_model"] == "models:/fomm-fomm/1"
    mlflow.set_tracking_uri(tracking.tracking_uri(store))
    model = mlflow.pyfunc.load_model("models:/fomm-fomm/1")
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == ["source", "driving"] and model.metadata.saved_input_example_info is not None
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    driving = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    frames = model.predict({"source": source, "driving": driving}, params={"relative": False})
    assert frames.shape == (1, 64, 64, 3) and frames.dtype == np.uint8
    kp_detector, generator, *_ = load_inference_models(project / "artifacts/train/checkpoint.pt")
    expected = to_uint8_frames(Animator(kp_detector, generator, from_uint8_frames(source[None]), relative=False,
                                        adapt_scale=True)(from_uint8_frames(driving)))
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 1


def test_evaluation_run_is_a_child_of_the_training_run_that_wrote_the_checkpoint(trained):
    project, shards, store, _ = trained
    result = cli(["evaluate", "--checkpoint", "artifacts/train/checkpoint.pt", "--shards", str(shards),
                  "--out", "artifacts/eval"], project, env=project_env())
    assert result.returncode == 0, result.stderr
    client, [train_run] = runs_of(store, "train")
    _, [evaluation] = runs_of(store, "evaluate")
    assert evaluation.info.experiment_id == train_run.info.experiment_id
    assert evaluation.data.tags[tracking.PARENT_TAG] == train_run.info.run_id
    assert evaluation.data.tags["fomm.input.checkpoint.run"] == train_run.info.run_id
    assert evaluation.info.run_name.startswith("evaluate no-git frame_size=64")
    numbers = json.loads((project / "metrics/evaluate.json").read_text())
    assert all(isinstance(v, (int, float)) for v in numbers.values()) and "l1" in numbers
    assert "akd_skipped" not in numbers and "checkpoint" not in numbers
    rows = (project / "metrics/evaluate_clips.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["clip_id", "frames", "l1", "baseline_l1", "psnr", "ssim"]
    per_clip = [dict(zip(rows[0].split("\t"), r.split("\t"))) for r in rows[1:]]
    frames = sum(int(r["frames"]) for r in per_clip)
    pooled = sum(int(r["frames"]) * float(r["l1"]) for r in per_clip) / frames
    assert frames == numbers["num_frames"] and pooled == pytest.approx(numbers["l1"], rel=1e-4)
    assert "evaluate_clips.tsv" in {f.path for f in client.list_artifacts(evaluation.info.run_id)}


def tree_state(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: size, mtime and content hash."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            state[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns,
                                                    hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def test_a_copied_project_trains_into_its_own_store_and_leaves_the_original_alone(trained, tmp_path):
    project, shards, _, _ = trained
    before = tree_state(project)
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    result = cli(["train", "--shards", str(shards), "--out", "artifacts/train2"], copy, env=project_env())
    assert result.returncode == 0, result.stderr
    assert tree_state(project) == before  # nothing written into the original (store, artifacts, metrics)
    client, runs = runs_of(copy / "artifacts", "train")
    assert len(runs) == 2
    for run in runs:  # the copied run and the new one: both have their files in the copy
        assert run.info.artifact_uri == f"fomm-store:mlartifacts/fomm/{run.info.run_id}/artifacts"
        assert (copy / "artifacts/mlartifacts/fomm" / run.info.run_id / "artifacts/train_metrics.json").is_file()
    assert sorted(str(v.version) for v in client.search_model_versions("name = 'fomm-fomm'")) == ["1", "2"]


def test_a_corrupt_store_stops_training_before_it_starts_with_one_line(trained, tmp_path):
    _, shards, _, _ = trained
    params_yaml(tmp_path / "params.yaml", epochs=1, max_steps=1)
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "mlflow.db").write_bytes(b"this is not an sqlite database" * 100)
    result = cli(["train", "--shards", str(shards)], tmp_path, env=dict(env(), **{tracking.ENV_DIR: str(tmp_path / "store")}))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "mlflow.db: the MLflow store is damaged (file is not a database)" in line
    assert not (tmp_path / "artifacts/train").exists() and "train:" not in result.stdout


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


def test_run_names_say_what_ran():
    tags = {"git_commit": "0123456789abcdef"}
    assert tracking.run_name("train", {"num_kp": 10, "lr": 5e-4}, tags) == "train 0123456 num_kp=10 lr=0.0005"
    assert tracking.run_name("evaluate", {}, {**tags, "dvc_exp_name": "lumpy-dhal"}) == "evaluate lumpy-dhal"
    assert tracking.run_name("train-syncer", None, {}) == "train-syncer no-git"


def test_failed_run_is_marked_failed_and_disabled_run_writes_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with tracking.tracked_run("evaluate", {"x": 1}, root=tmp_path / "s") as logger:
            logger.log_metrics({"m": 1.5}, step=3)
            raise RuntimeError("boom")
    client, [run] = runs_of(tmp_path / "s", "evaluate")
    assert run.info.status == "FAILED" and run.data.metrics["m"] == 1.5 and run.data.params["x"] == "1"
    with tracking.tracked_run("train", {"x": 1}, enabled=False, root=tmp_path / "off") as logger:
        logger.log_metrics({"m": 1.0}, step=1)
    assert not (tmp_path / "off").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_refuses_without_a_store(tmp_path):
    result = cli(["ui", "--mlflow-dir", str(tmp_path / "nothing")], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no MLflow store at") and "nothing/mlflow.db" in line
    assert not (tmp_path / "nothing").exists()


def test_ui_serves_the_tracked_runs_and_their_images(trained):
    project, _, store, _ = trained
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "ui", "--port", str(port)],
                            cwd=project, env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api/2.0/mlflow"
    try:
        deadline, experiment = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, "fomm ui exited early"
            try:
                with urllib.request.urlopen(f"{api}/experiments/get-by-name?experiment_name=fomm", timeout=5) as response:
                    experiment = json.load(response)["experiment"]
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert experiment is not None, "mlflow server did not come up"
        request = urllib.request.Request(
            f"{api}/runs/search", data=json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
        train = next(r for r in runs if r["info"]["run_name"].startswith("train tiny-exp"))
        params = {p["key"]: p["value"] for p in train["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in train["data"]["metrics"]}
        assert params["train.max_steps"] == "2" and np.isfinite(metrics["loss/perceptual"])
        # The server resolves the store-relative artifact locations: the sample images come through.
        run_id = train["info"]["run_id"]
        with urllib.request.urlopen(f"{api}/artifacts/list?run_id={run_id}&path=images", timeout=10) as response:
            image = next(f["path"] for f in json.load(response)["files"] if f["path"].endswith(".png"))
        query = urllib.parse.urlencode({"path": image, "run_uuid": run_id})
        with urllib.request.urlopen(f"{base}/get-artifact?{query}", timeout=10) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()  # fomm ui stops its mlflow server on SIGTERM
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
            out, _ = proc.communicate()
            pytest.fail(f"fomm ui did not stop on SIGTERM:\n{out}")
    assert f"{base}/#/experiments/{experiment['experiment_id']}/runs?workflowType=machine_learning" in out
    assert proc.returncode == 0
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"{api}/experiments/search", timeout=5)  # the server went down with it
