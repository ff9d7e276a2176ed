"""End to end: `dvc repro` of the whole DAG on a tiny synthetic config in a temp git repo.

Data stages at the real settings (fewer, shorter videos); FOMM and talker stages with tiny
models and a few steps, so the test checks the wiring, not the learning (bench/ and the
make run numbers do that).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    env.pop("FOMM_MLFLOW_DIR", None)  # runs must land in the project's own artifacts/mlflow.db
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
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
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
    experiment = store.get_experiment_by_name(tracking.EXPERIMENT)
    kinds = {r.data.tags["fomm.kind"] for r in store.search_runs([experiment.experiment_id])}
    assert kinds == {"train", "evaluate", "train-syncer", "train-talker", "evaluate-talker"}

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
