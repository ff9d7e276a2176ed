"""fomm evaluate on tiny real shards (built by the real stages) with an untrained checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from scipy.ndimage import gaussian_filter

from fomm_core.data import ClipFramesDataset, ShardStore
from fomm_core.inference.evaluate import evaluate_model, video_name

from _inference_helpers import SIZE, build_tiny_shards, ffprobe_streams, run_cli, save_tiny_checkpoint, tiny_models

KEYS = ("l1", "psnr", "ssim", "baseline_l1", "baseline_psnr", "baseline_ssim", "landmark_error")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    build_tiny_shards(root)
    save_tiny_checkpoint(root / "ckpt.pt")
    return root


def ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Independent SSIM: scipy Gaussian filters (radius 5 = 11x11), border cropped to 'valid'."""
    c1, c2 = 0.01**2, 0.03**2

    def blur(a):
        return gaussian_filter(a, sigma=1.5, truncate=5 / 1.5, axes=(0, 1))[5:-5, 5:-5]

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return float((((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def copy_baseline(shards) -> dict:
    store = ShardStore(shards)
    l1, psnr, ssim = [], [], []
    for clip in store.select("test"):
        frames = np.concatenate(list(store.iter_frames(clip))).astype(np.float64) / 255
        for frame in frames[1:]:
            diff = frame - frames[0]
            l1.append(np.abs(diff).mean())
            psnr.append(10 * math.log10(1 / (diff**2).mean()))
            ssim.append(ssim_reference(frames[0], frame))
    return {"baseline_l1": np.mean(l1), "baseline_psnr": np.mean(psnr), "baseline_ssim": np.mean(ssim),
            "num_frames": len(l1)}


def test_cli_writes_metrics_and_videos(project):
    (project / "params.yaml").write_text(yaml.safe_dump(
        {**yaml.safe_load((project / "params.yaml").read_text()),
         "evaluate": {"batch_size": 8, "num_videos": 2, "device": "cpu"}}))
    result = run_cli(["evaluate", "--checkpoint", "ckpt.pt", "--out", "artifacts/eval"], project)
    assert "evaluated 1 test clips" in result.stdout
    out = project / "artifacts/eval"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in KEYS:
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert 0 <= metrics["l1"] <= 1 and -1 <= metrics["ssim"] <= 1 and metrics["landmark_error"] > 0
    # AKD/AED always run (dlib): the real 64 px test frames have faces; the copy baseline is measured
    assert metrics["face_backend"] == "dlib-hog" and metrics["face_detection_rate"] > 0.9
    assert metrics["baseline_akd"] > 0 and metrics["baseline_aed"] >= 0
    assert (metrics["akd"] is None) == (metrics["face_pairs_rate"] == 0)  # an untrained model draws no face
    assert "AKD" in result.stdout

    expected = copy_baseline(project / "artifacts/shards")
    assert metrics["num_frames"] == expected["num_frames"]
    for key in ("baseline_l1", "baseline_psnr", "baseline_ssim"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), key

    # One test clip, so one reconstruction video: source | driving | prediction.
    test_clips = ShardStore(project / "artifacts/shards").select("test")
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == sorted(video_name(c.clip_id) for c in test_clips)
    stream = ffprobe_streams(out / "videos" / videos[0])["video"]
    assert (stream["width"], stream["height"]) == (3 * SIZE, SIZE)
    assert int(stream["nb_read_frames"]) == test_clips[0].num_frames
    assert not [p for p in project.glob("artifacts/.eval*")]  # no temp leftovers

    # The run is in the project's MLflow store: metrics equal to metrics.json, files attached.
    from pipeline import tracking

    mlflow_client = tracking.client(project / "artifacts")
    experiment = mlflow_client.get_experiment_by_name(tracking.EXPERIMENT)
    [run] = mlflow_client.search_runs([experiment.experiment_id], "tags.`fomm.kind` = 'evaluate'")
    assert run.info.status == "FINISHED" and run.data.params["evaluate.num_videos"] == "2"
    for key in ("l1", "baseline_l1", "psnr", "landmark_error", "baseline_akd", "baseline_aed", "face_detection_rate"):
        assert run.data.metrics[key] == pytest.approx(metrics[key]), key
    logged = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert "metrics.json" in logged and "videos" in logged
    assert [a.path for a in mlflow_client.list_artifacts(run.info.run_id, "videos")] == [f"videos/{videos[0]}"]


def test_library_function_counts_frames_and_skips_landmarks_without_train(project):
    kp, gen = tiny_models()
    test = ClipFramesDataset(project / "artifacts/shards", "test")
    done = []
    metrics = evaluate_model(kp, gen, test, batch_size=5, progress=done.append)
    assert sum(done) == sum(c.num_frames for c in test.clips)
    assert metrics["num_frames"] == sum(c.num_frames - 1 for c in test.clips)
    assert metrics["landmark_error"] is None and "train" in metrics["landmark_error_skipped"]
    # Batch size does not change the pooled numbers.
    again = evaluate_model(kp, gen, test, batch_size=64)
    for key in ("l1", "psnr", "ssim", "baseline_l1"):
        assert again[key] == pytest.approx(metrics[key], rel=1e-5)


def test_cli_errors_are_one_line(project):
    cases = [
        (["evaluate", "--checkpoint", "missing.pt"], "checkpoint not found"),
        (["evaluate", "--checkpoint", "ckpt.pt", "--shards", "nowhere"], "shard index not found"),
    ]
    (project / "bad.yaml").write_text("evaluate:\n  batch_size: 0\n")
    cases.append((["evaluate", "--params", "bad.yaml", "--checkpoint", "ckpt.pt"], "batch_size"))
    (project / "typo.yaml").write_text("evaluate:\n  num_video: 1\n")
    cases.append((["evaluate", "--params", "typo.yaml", "--checkpoint", "ckpt.pt"], "unknown key"))
    for args, message in cases:
        result = run_cli(args, project, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_akd_and_aed_match_an_independent_computation(project):
    """Generated and copied-source frames against the real ones through the dlib backend."""
    from fomm_core.faces import DlibBackend
    from fomm_core.faces.distances import FaceDistances, describe
    from fomm_core.inference.animate import Animator, to_uint8_frames

    kp, gen = tiny_models()
    faces = DlibBackend()
    test = ClipFramesDataset(project / "artifacts/shards", "test")
    metrics = evaluate_model(kp, gen, test, batch_size=8, face_backend=faces)
    model, baseline = FaceDistances(), FaceDistances()
    for clip in test.clips:
        frames = torch.cat(list(test.iter_clip_frames(clip.clip_id, 64)))
        animator = Animator(kp, gen, frames[:1], relative=False)
        with torch.inference_mode():
            prediction = animator.generate(animator.keypoints(frames))
        real = describe(faces, list(to_uint8_frames(frames[1:])))
        model.add(describe(faces, list(to_uint8_frames(prediction[1:]))), real)
        baseline.add(describe(faces, list(to_uint8_frames(frames[:1]))) * len(real), real)
    for key, value in model.results().items():
        assert metrics[key] == pytest.approx(value, rel=1e-6) if value is not None else metrics[key] is None, key
    assert metrics["baseline_akd"] == pytest.approx(baseline.results()["akd"], rel=1e-6)
    assert metrics["baseline_aed"] == pytest.approx(baseline.results()["aed"], rel=1e-6)
    assert metrics["baseline_akd"] > 0
