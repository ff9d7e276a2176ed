"""A folder of three own videos, no metadata at all: `dvc repro` of the whole DAG to a trained
checkpoint (tiny settings, as in test_pipeline_e2e): metadata reads the folder, tubes finds
the faces, crop/shard/train/evaluate and the talker stages run on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from _face_helpers import draw, write_video
from test_pipeline_e2e import REPO, run, stages_run, tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own_project")
    for name in ("pipeline", "fomm_core"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    for n, (identity, x) in enumerate(((2, 200), (5, 260), (7, 240))):  # three people, one video each
        frames = [draw(480, 270, [(identity, x + 15 * np.sin(k / 8), 135, 1.0)], seed=n, mouth_open=0.4 * (k % 5 == 0))
                  for k in range(60)]
        write_video(root / "own_videos" / f"take{n + 1}.mp4", frames)
    params = tiny_params()
    params["metadata"]["input"] = "own_videos"
    params["tubes"].update(min_frames=20, min_size=40, workers=2)
    params["shard"]["groundtruth_dir"] = ""  # own footage has no synthetic ground truth
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text("/artifacts/\n")
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    return root


def test_own_videos_train_end_to_end(project):
    ran = stages_run(run(["dvc", "repro"], project).stdout)
    assert {"metadata", "tubes", "crop", "shard", "train", "evaluate", "train-talker"} <= set(ran)
    tubes = pd.read_parquet(project / "artifacts/tubes/clips.parquet")
    assert len(tubes) == 3 and tubes["video_id"].str.startswith("own").all()
    assert list(tubes.sort_values("clip_id")["partition"]) == ["train", "train", "test"]
    index = pd.read_parquet(project / "artifacts/shards/index.parquet")
    assert sorted(index["clip_id"]) == sorted(tubes["clip_id"])
    assert (project / "artifacts/train/checkpoint.pt").stat().st_size > 0
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    # 64 px frames (the tiny model): dlib still finds most faces (upsampled to 128)
    assert metrics["num_clips"] == 1 and metrics["face_detection_rate"] > 0.6 and metrics["baseline_akd"] is not None
    assert metrics["landmark_error"] is None  # no ground truth for own videos
    assert stages_run(run(["dvc", "repro"], project).stdout) == []
