"""End to end: `dvc repro` of the data stages on a tiny synthetic config in a temp git repo."""

from __future__ import annotations

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
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synth"].update(TINY_SYNTH)
    return params


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


def test_repro_builds_shards_then_skips_then_reruns_only_downstream(project):
    first = run(["dvc", "repro"], project)
    assert stages_run(first.stdout) == ["synth", "metadata", "download", "crop", "shard"]

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

    second = run(["dvc", "repro"], project)
    assert stages_run(second.stdout) == []
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project).stdout

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["crop"]["increase_area"] = params["crop"].get("increase_area", 0.1) + 0.05
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = run(["dvc", "repro"], project)
    assert stages_run(third.stdout) == ["crop", "shard"]
