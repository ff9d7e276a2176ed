"""Shared fixtures for the evaluate/animate tests: tiny models, checkpoints, shards, media."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from fomm_core.checkpoint import save_checkpoint
from fomm_core.model_config import DenseMotionConfig, GeneratorConfig, KeypointDetectorConfig, small_model_config
from fomm_core.models import build_models

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SIZE = 64

TINY_SYNTH = {
    "identities": 3, "test_identities": 1, "videos_per_identity": 1, "clips_per_video": 1,
    "min_clip_seconds": 1.4, "max_clip_seconds": 1.6, "gap_seconds": 0.3, "lead_seconds": 0.2,
}


def tiny_model_config():
    """small_model_config with far fewer channels: mechanics only, fast at 64 px."""
    config = small_model_config()
    config.kp = KeypointDetectorConfig(block_expansion=8, max_features=32, num_blocks=3)
    config.generator = GeneratorConfig(
        block_expansion=8, max_features=32, num_down_blocks=2, num_bottleneck_blocks=1,
        dense_motion=DenseMotionConfig(block_expansion=8, max_features=32, num_blocks=3),
    )
    return config


def tiny_models(seed: int = 0):
    torch.manual_seed(seed)
    kp, gen, _ = build_models(tiny_model_config())
    # Random-ish Jacobians (the detector starts at identity) so jacobian code paths matter.
    with torch.no_grad():
        kp.jacobian.weight.normal_(0, 0.05)
    return kp.eval(), gen.eval()


def save_tiny_checkpoint(path: Path, seed: int = 0, frame_size: int | None = None) -> Path:
    """Untrained tiny weights; ``frame_size`` records a training resolution as fomm train does."""
    kp, gen = tiny_models(seed)
    extra = {"train_config": {"frame_size": frame_size}} if frame_size else None
    save_checkpoint(path, model_config=tiny_model_config(), models={"kp_detector": kp, "generator": gen}, extra=extra)
    return path


def run_cli(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                            env=env)
    if check:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert a CLI run failed with exit 2 and one stderr line (no traceback) holding ``fragments``."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def run_in_process(args: list[str], cwd: Path):
    """The `fomm` CLI in this process (no interpreter start-up): a result with returncode, stdout, stderr.

    For tests that run many commands that stop early (refusals, errors); the real process is
    still what :func:`run_cli` tests.
    """
    from typer.testing import CliRunner

    from pipeline.cli import app

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        os.chdir(previous)
    result.returncode = result.exit_code
    return result


def build_tiny_shards(root: Path) -> Path:
    """Run the real synth -> shard stages on a tiny synthetic config; returns the shard folder."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synth"].update(TINY_SYNTH)
    params["crop"]["size"] = SIZE
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_cli(["synth", "--out", "artifacts/synth"], root)
    run_cli(["metadata", "artifacts/synth/vox-metadata.csv", "--out", "artifacts/metadata/clips.parquet",
             "--rejects", "artifacts/metadata/rejects.parquet"], root)
    run_cli(["download", "artifacts/metadata/clips.parquet", "--out", "artifacts/videos"], root)
    run_cli(["crop", "artifacts/metadata/clips.parquet", "--videos", "artifacts/videos", "--out", "artifacts/clips"],
            root)
    run_cli(["shard", "artifacts/clips", "--out", "artifacts/shards"], root)
    return root / "artifacts" / "shards"


def make_video(path: Path, frames: int, size: int = SIZE, audio: bool = True, pattern: str = "testsrc2",
               width: int | None = None) -> Path:
    """A real H.264 (+ AAC) test video from ffmpeg's lavfi sources."""
    width = width or size
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
           f"{pattern}=size={width}x{size}:rate=25:duration={frames / 25}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={frames / 25}",
                "-c:a", "aac", "-shortest"]
    cmd += ["-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def make_image(path: Path, size: int = SIZE, seed: int = 0) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (5, 5), 0)
    cv2.imwrite(str(path), image)
    return path


def ffprobe_streams(path: Path) -> dict:
    import json

    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-print_format", "json", "-show_streams",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}
