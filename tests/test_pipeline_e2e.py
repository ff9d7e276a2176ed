"""End to end: `dvc repro` of the whole DAG on a tiny synthetic config in a temp git repo,
then comparing runs the way DVC users do, in that same repo (the tests run in file order).

Data stages at the real settings (fewer, shorter videos); FOMM and talker stages with tiny
models and a few steps, so the test checks the wiring, not the learning (bench/ and the
make run numbers do that). After the first test: a clone elsewhere reproduces the same
dvc.lock, two commits give a `dvc metrics diff`, queued experiments show their metrics,
`dvc plots show/diff` write HTML, and `dvc push` / `dvc pull` restore outputs in a fresh clone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def tiny_params() -> dict:
    from fomm_core.config import to_mapping

    from _train_helpers import tiny_losses, tiny_model

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synth"].update(TINY_SYNTH)
    params["model"] = to_mapping(tiny_model())
    params["losses"] = to_mapping(tiny_losses())
    params["train"].update(epochs=1, num_repeats=2, batch_size=2, frame_size=64, scheduler_milestones=[1],
                           amp="none", image_log_every=1)
    params["evaluate"].update(num_videos=1, device="cpu")
    params["demo"].update(device="cpu")
    kp = params["model"]["num_kp"]
    params["talker_model"].update(num_kp=kp, levels=2, audio_channels=8, dim=16, layers=1, heads=2, context=8,
                                  branch_hidden=8)
    params["syncer"].update(num_kp=kp, levels=2, hidden=8, embed_dim=8, candidates=4, steps=3, batch_size=4,
                            log_every=1)
    params["talker_train"].update(steps=3, teacher_forcing_steps=1, batch_size=2, sequence_frames=12,
                                  disc_windows=[5, 10], disc_hidden=8, log_every=1)
    params["talker_eval"].update(max_offset=3)
    for section in ("model", "losses", "train"):  # yaml.safe_dump cannot write tuples
        params[section] = yaml.safe_load(yaml.safe_dump(_lists(params[section])))
    return params


def _lists(value):
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


TINY_SYNTH = {
    "identities": 3,
    "test_identities": 1,
    "videos_per_identity": 1,
    "clips_per_video": 1,
    "min_clip_seconds": 1.4,
    "max_clip_seconds": 1.6,
    "gap_seconds": 0.3,
    "lead_seconds": 0.2,
}


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1", **GIT_IDENTITY)
    for name in ("FOMM_MLFLOW_DIR", "DVC_ROOT", "XDG_CACHE_HOME"):
        env.pop(name, None)  # runs must land in the project's own artifacts/mlflow.db
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in ("pipeline", "fomm_core"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "Makefile"):
        shutil.copy(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    (root / ".gitignore").write_text("/artifacts/\n")
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    return root


DATA_STAGES = ["synth", "metadata", "download", "tubes", "crop", "shard"]
MODEL_STAGES = {"train", "evaluate", "demo", "extract-keypoints", "train-syncer", "train-talker", "evaluate-talker",
                "talk"}


def test_repro_builds_everything_then_skips_then_reruns_only_downstream(project):
    first = run(["dvc", "repro"], project)
    ran = stages_run(first.stdout)
    assert ran[:6] == DATA_STAGES and set(ran[6:]) == MODEL_STAGES
    for before, after in (("train", "evaluate"), ("train", "extract-keypoints"), ("extract-keypoints", "train-syncer"),
                          ("train-syncer", "train-talker"), ("train-talker", "evaluate-talker"), ("demo", "talk"),
                          ("train-talker", "talk")):
        assert ran.index(before) < ran.index(after), (before, after)

    index = pd.read_parquet(project / "artifacts/shards/index.parquet")
    clips = pd.read_parquet(project / "artifacts/metadata/clips.parquet")
    assert len(index) == len(clips) > 0
    assert set(index["partition"]) == {"train", "test"}
    assert not set(index.query("partition == 'train'")["person_id"]) & set(
        index.query("partition == 'test'")["person_id"]
    )
    assert (index["num_frames"] == clips.set_index("clip_id").loc[index["clip_id"], "end"].values
            - clips.set_index("clip_id").loc[index["clip_id"], "start"].values).all()
    features = np.load(project / "artifacts/shards" / index["features"].iloc[0])
    assert features["logmel"].shape[1] == 26
    assert abs(features["logmel"].shape[0] - 4 * index["num_frames"].iloc[0]) <= 4
    assert features["gt_landmarks"].shape == (index["num_frames"].iloc[0], 5, 2)

    from fomm_core.data import FramePairDataset

    dataset = FramePairDataset(project / "artifacts/shards", partition="train")
    item = dataset[0]
    assert item["source"].shape == (3, 256, 256) and item["source"].dtype.is_floating_point

    # The model stages' outputs: metrics DVC can read, the demo and talk videos, MLflow runs.
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    assert {"l1", "psnr", "ssim", "baseline_l1", "landmark_error", "akd", "aed", "baseline_akd",
            "baseline_aed", "face_detection_rate"} <= metrics.keys()
    assert metrics["face_detection_rate"] > 0.9 and metrics["baseline_akd"] > 0  # dlib finds the synthetic faces
    assert metrics["frame_size"] == 64 and metrics["perceptual_backbone"] == "random"
    # Loss curves written during training, one row per log point (pipeline/CONTRACTS.md).
    for curve, first_column in (("train/train_losses.tsv", "perceptual"), ("syncer/syncer_losses.tsv", "loss"),
                                ("talker/talker_losses.tsv", "loss")):
        rows = (project / "artifacts" / curve).read_text().splitlines()
        assert rows[0].startswith(f"step\t{first_column}\t") and len(rows) > 1, curve
    train_metrics = json.loads((project / "artifacts/train/train_metrics.json").read_text())
    assert train_metrics["perceptual_backbone"] == "random" and train_metrics["amp"] == "none"
    shown = run(["dvc", "metrics", "show", "--json"], project).stdout
    assert "baseline_l1" in shown and "mouth_corr" in shown and "samples_per_second" in shown
    talker_metrics = json.loads((project / "artifacts/talker_eval/metrics.json").read_text())
    assert {"rendered_mouth_envelope_corr", "shuffled_mouth_envelope_corr", "real_mouth_envelope_corr",
            "rendered_face_rate"} <= talker_metrics.keys()
    assert talker_metrics["real_mouth_envelope_corr"] is not None  # dlib reads the real synthetic mouths
    assert {"gen_sync_distance", "gt_sync_distance", "shuffled_sync_distance", "kp_l2", "mouth_corr",
            "shuffled_mouth_corr"} <= talker_metrics.keys()
    kp = np.load(next((project / "artifacts/keypoints/test").glob("*.npz")))
    assert kp["value"].shape[1:] == (5, 2) and kp["jacobian"].shape[1:] == (5, 2, 2)
    # Every talker file records the FOMM weights it was made from: talker_fomm.checkpoint's.
    from fomm_core.checkpoint import read_weights_sha256
    from fomm_core.talker import load_syncers_checkpoint, load_talker_checkpoint

    fomm = read_weights_sha256(project / "artifacts/train/checkpoint.pt")
    assert str(kp["fomm_sha256"]) == fomm == read_weights_sha256(project / "artifacts/talker/fomm.pt")
    assert load_syncers_checkpoint(project / "artifacts/syncer/syncers.pt").fomm_sha256 == fomm
    assert load_talker_checkpoint(project / "artifacts/talker/talker.pt").fomm_sha256 == fomm
    for video in ("artifacts/demo/animation.mp4", "artifacts/talk/demo.mp4"):
        streams = ffprobe(project / video)
        assert {"video", "audio"} <= set(streams), video
        assert (streams["video"]["width"], streams["video"]["height"]) == (64, 64)
    from pipeline import tracking

    store = tracking.client(project / "artifacts")
    kinds = {name: {r.data.tags["fomm.kind"] for r in store.search_runs([store.get_experiment_by_name(name).experiment_id])}
             for name in ("fomm", "talker")}
    assert kinds == {"fomm": {"train", "evaluate"}, "talker": {"train-syncer", "train-talker", "evaluate-talker"}}
    [talker_run] = store.search_runs([store.get_experiment_by_name("talker").experiment_id],
                                     "tags.`fomm.kind` = 'train-talker'")
    assert talker_run.data.tags["fomm.registered_model"] == "models:/fomm-talker/1"
    [talker_eval] = store.search_runs([store.get_experiment_by_name("talker").experiment_id],
                                      "tags.`fomm.kind` = 'evaluate-talker'")
    assert talker_eval.data.tags[tracking.PARENT_TAG] == talker_run.info.run_id
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri(project / "artifacts"))
    speaking = mlflow.pyfunc.load_model("models:/fomm-talker/1").predict(
        {"image": np.full((80, 60, 3), 128, np.uint8), "audio": np.zeros(16000 // 5, np.float32)})
    assert speaking.shape == (5, 64, 64, 3) and speaking.dtype == np.uint8  # 0.2 s at 25 fps
    # DVC's numbers: text-free files in the git-tracked metrics/ folder.
    for name in ("train", "evaluate", "syncer", "talker", "talker_eval"):
        numbers = json.loads((project / "metrics" / f"{name}.json").read_text())
        assert numbers and "checkpoint" not in numbers and "perceptual_backbone" not in numbers, name

    second = run(["dvc", "repro"], project)
    assert stages_run(second.stdout) == []
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["crop"]["increase_area"] = params["crop"].get("increase_area", 0.1) + 0.05
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run(["dvc", "repro"], project)
    assert stages_run(third.stdout)[:2] == ["crop", "shard"]  # and, as the shards changed, the model stages
    # the persistent checkpoint of the old shards is not continued
    assert "checkpoint.pt was trained with other shards; starting from scratch" in third.stdout + third.stderr

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["talker_eval"]["max_offset"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    fourth = run(["dvc", "repro"], project)
    assert stages_run(fourth.stdout) == ["evaluate-talker"]


def ffprobe(path: Path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    return {s["codec_type"]: s for s in json.loads(result.stdout)["streams"]}


# ---------------------------------------------------------------- comparing runs (same project, in order)


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], project)


def set_param(project: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_clone_elsewhere_reproduces_the_same_dvc_lock(project, tmp_path):
    """No absolute path in any tracked file: the data stages rebuilt in another folder hash the same."""
    commit(project, "pipeline reproduced")
    assert "dvc.lock" in run(["git", "ls-files"], project).stdout
    clone = tmp_path / "some" / "other" / "place"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    ran = stages_run(run(["dvc", "repro", "shard"], clone).stdout)
    assert ran == DATA_STAGES
    here, there = lock_hashes(project, DATA_STAGES), lock_hashes(clone, DATA_STAGES)
    assert here.keys() == there.keys()
    assert {k: v for k, v in there.items() if here[k] != v} == {}
    assert str(project) not in (project / "dvc.lock").read_text()


# Folders whose bytes change from run to run (not with the location): the download report's
# timings and log. Everything made from them (crop, shard) must still hash the same.
RUN_DEPENDENT = {"artifacts/videos"}


def lock_hashes(project: Path, stages: list[str]) -> dict[tuple[str, str], str]:
    """(stage, path) -> md5 of every dep and out of ``stages`` in dvc.lock, but RUN_DEPENDENT."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {(stage, entry["path"]): entry.get("md5") or entry.get("hash")
            for stage in stages for kind in ("deps", "outs") for entry in lock[stage].get(kind, [])
            if entry["path"] not in RUN_DEPENDENT}


def test_metrics_and_params_diff_between_two_commits(project):
    commit(project, "baseline")
    set_param(project, "train", "lr_generator", 2e-3)
    assert stages_run(run(["dvc", "repro", "evaluate"], project).stdout) == ["train", "evaluate"]
    commit(project, "higher generator learning rate")
    metrics = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json"], project).stdout)
    assert {"metrics/train.json", "metrics/evaluate.json"} <= metrics.keys()
    for file, key in (("metrics/evaluate.json", "l1"), ("metrics/train.json", "losses.perceptual")):
        change = metrics[file][key]
        assert isinstance(change["old"], float) and isinstance(change["new"], float) and change["old"] != change["new"]
    params = json.loads(run(["dvc", "params", "diff", "HEAD~1", "HEAD", "--json"], project).stdout)
    assert params["params.yaml"]["train.lr_generator"] == {"old": 0.0005, "new": 0.002, "diff": 0.0015}
    shown = run(["dvc", "metrics", "diff", "HEAD~1", "HEAD"], project).stdout  # the table a user reads
    assert "metrics/evaluate.json" in shown and "l1" in shown


def exp_rows(project: Path) -> dict[str, dict]:
    """``dvc exp show --json``: experiment name -> its metrics files' numbers."""
    rows = {}
    for baseline in json.loads(run(["dvc", "exp", "show", "--json"], project).stdout):
        for exp in baseline.get("experiments") or []:
            for revision in exp.get("revs") or []:
                data = revision.get("data") or {}
                metrics = {path: (content.get("data") or {}) for path, content in (data.get("metrics") or {}).items()}
                params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                rows[revision.get("name") or exp.get("name")] = {"metrics": metrics, "params": params}
    return rows


def test_queued_experiments_show_their_metrics_and_mlflow_runs(project):
    for lr in (1e-4, 1e-3):
        run(["dvc", "exp", "run", "--queue", "evaluate", "-S", f"train.lr_generator={lr}"], project)
    run(["dvc", "queue", "start", "--jobs", "1"], project)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(3)
    run(["dvc", "queue", "stop"], project)  # no worker left behind
    assert "Failed" not in status, status
    rows = exp_rows(project)
    done = {name: row for name, row in rows.items() if row["metrics"].get("metrics/evaluate.json")}
    assert sorted(row["params"]["train"]["lr_generator"] for row in done.values()) == [1e-4, 1e-3], rows
    for row in done.values():
        assert row["metrics"]["metrics/evaluate.json"]["l1"] > 0 and row["metrics"]["metrics/train.json"]["steps"] > 0
    from pipeline import tracking

    store = tracking.client(project / "artifacts")  # DVC_ROOT: queued runs log to the project's own store
    names = {r.info.run_name for r in store.search_runs([store.get_experiment_by_name("fomm").experiment_id])}
    for name in done:
        assert any(n.startswith(f"train {name} ") for n in names), (name, names)
        assert f"evaluate {name} frame_size=64" in names
    shown = run(["dvc", "exp", "show", "--only-changed"], project).stdout
    assert "metrics/evaluate.json" in shown or "l1" in shown


def test_plots_show_and_diff_render_html(project, tmp_path):
    run(["dvc", "plots", "show", "-o", str(tmp_path / "show")], project)
    html = (tmp_path / "show" / "index.html").read_text()
    clip = pd.read_csv(project / "metrics/evaluate_clips.tsv", sep="\t")["clip_id"].iloc[0]
    assert "Talker synchrony" in html and "shuffled" in html and clip in html
    assert "FOMM training losses" in html and "equivariance_value" in html  # the per-step loss curve
    assert "Syncer training loss" in html and "Talker training losses" in html
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    assert not shown.get("errors"), shown.get("errors")  # every plot file found and every column in it
    exps = [name for name, row in exp_rows(project).items() if row["metrics"].get("metrics/evaluate.json")]
    run(["dvc", "plots", "diff", *exps, "-o", str(tmp_path / "diff")], project)
    html = (tmp_path / "diff" / "index.html").read_text()
    assert all(name in html for name in exps) and "Evaluation, L1 per test clip" in html


def test_push_then_pull_in_a_fresh_clone_restores_the_outputs(project, tmp_path):
    """`make dvc-remote` (what `make setup` runs) gives a default remote; push, then pull in a clone."""
    remote = tmp_path / "remote"
    made = run(["make", "--no-print-directory", "dvc-remote", f"DVC_REMOTE={remote}"], project).stdout
    assert f"DVC remote 'local' (default): {remote}" in made
    assert run(["make", "--no-print-directory", "dvc-remote", "DVC_REMOTE=/elsewhere"], project).stdout == ""
    assert f"url = {remote}" in (project / ".dvc/config.local").read_text()  # a set default is left alone
    assert "remote" not in run(["git", "status", "--porcelain"], project).stdout  # .dvc/config.local: not committed
    run(["dvc", "push"], project)
    clone = tmp_path / "fresh"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["make", "--no-print-directory", "dvc-remote", f"DVC_REMOTE={remote}"], clone)
    run(["dvc", "pull"], clone)
    for output in ("artifacts/train/checkpoint.pt", "artifacts/shards/index.parquet", "artifacts/talker/talker.pt"):
        assert (clone / output).read_bytes() == (project / output).read_bytes(), output
    assert "up to date" in run(["dvc", "status", "evaluate"], clone).stdout
