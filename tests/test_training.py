"""fomm train: losses, checkpoints, exact resume, NaN stop, SIGTERM, DDP on CPU, bf16, CLI errors."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from _train_helpers import (
    FRAME, build_shards, cli, ddp_worker, env, params_yaml, tiny_losses, tiny_model, tiny_train,
)
from fomm_core.checkpoint import load_inference_models, read_checkpoint
from fomm_core.errors import FommError
from fomm_core.training import Trainer
from fomm_core.training.sampling import ResumableSampler
from fomm_core.training.visualize import PALETTE, draw_keypoints, sample_grid


def quiet(*args, **kwargs):
    pass


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.getbasetemp())


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, m in trainer.models().items() for k, v in m.state_dict().items()}


def test_resume_continues_exactly_like_an_uninterrupted_run(shards, tmp_path):
    # 2 steps per epoch, 6 steps: the split at step 3 falls mid-epoch, after an lr milestone.
    straight = Trainer(shards, tmp_path / "a", tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=6),
                       keep_history=True, log=quiet)
    full = straight.run()
    assert full.steps == 6 and len(full.step_losses) == 6
    assert all(math.isfinite(v) for losses in full.step_losses for v in losses.values())
    assert {"perceptual", "equivariance_value", "equivariance_jacobian", "generator_gan", "feature_matching",
            "discriminator_gan"} <= set(full.step_losses[0])

    first = Trainer(shards, tmp_path / "b", tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=3),
                    keep_history=True, log=quiet).run()
    saved = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (3, 1, 1)
    resumed = Trainer(shards, tmp_path / "b", tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=6),
                      keep_history=True, resume="require", log=quiet)
    assert resumed.step == 3
    rest = resumed.run()
    assert first.step_losses + rest.step_losses == full.step_losses
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # lr dropped by gamma at the epoch-1 milestone and the schedule state survived the resume
    assert resumed.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(2e-5)


def test_checkpoint_and_metrics_are_usable_for_inference(shards, tmp_path):
    result = Trainer(shards, tmp_path, tiny_model(), tiny_losses(), tiny_train(max_steps=2), log=quiet).run()
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert "discriminator" not in state  # generator_gan 0: no discriminator is trained or saved
    assert set(state["optimizers"]) == {"generator", "kp_detector"}
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    kp, gen, config, frame_size, *_ = load_inference_models(tmp_path / "checkpoint.pt")
    assert config == tiny_model() and frame_size == FRAME  # the training resolution travels with the weights
    frame = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kp_out = kp(frame)
        pred = gen(frame, kp_driving=kp_out, kp_source=kp_out)["prediction"]
    assert pred.shape == (1, 3, 64, 64) and torch.isfinite(pred).all()
    import json

    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert metrics["steps"] == result.steps == 2
    assert metrics["samples_per_second"] > 0 and set(metrics["losses"]) >= {"perceptual", "total"}


def test_nan_loss_stops_with_the_step_and_term(shards, tmp_path):
    trainer = Trainer(shards, tmp_path, tiny_model(), tiny_losses(), tiny_train(max_steps=3), log=quiet)
    with torch.no_grad():
        trainer.generator.final.weight.fill_(float("nan"))
    with pytest.raises(FommError, match=r"step 1: loss 'perceptual' is nan"):
        trainer.run()


def test_bf16_autocast_step_on_cpu(shards, tmp_path):
    trainer = Trainer(shards, tmp_path, tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=1, amp="bf16"),
                      keep_history=True, log=quiet)
    assert trainer.autocast["enabled"] and trainer.autocast["dtype"] == torch.bfloat16
    result = trainer.run()
    assert result.steps == 1 and all(math.isfinite(v) for v in result.step_losses[0].values())


def test_ddp_two_gloo_processes_keep_identical_weights(shards, tmp_path):
    results = tmp_path / "ranks"
    results.mkdir()
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "init"), str(shards), str(tmp_path / "out"), str(results)),
             nprocs=2, join=True)
    rank0 = torch.load(results / "rank0.pt", weights_only=True)
    rank1 = torch.load(results / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert read_checkpoint(tmp_path / "out" / "checkpoint.pt")["world_size"] == 2  # rank 0 saved it


def test_torchrun_cli_trains_with_two_ranks_and_only_rank0_logs_and_saves(shards, tmp_path):
    """The documented multi-process launch: `torchrun --standalone --nproc-per-node 2 -m pipeline train`."""
    params_yaml(tmp_path / "params.yaml", gan=1.0, epochs=1, max_steps=2)
    store = tmp_path / "store"
    run_env = dict(env(), FOMM_MLFLOW_DIR=str(store), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "pipeline", "train", "--shards", str(shards), "--out", "out"],
        cwd=tmp_path, capture_output=True, text=True, env=run_env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("training on cpu (2 process(es))") == 1  # rank 0 alone logs
    state = read_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert state["world_size"] == 2 and state["epoch"] == 1  # 4 items per epoch: 2 ranks x batch 2 = 1 step
    assert state["step"] == 1 and "discriminator" in state
    import json

    assert json.loads((tmp_path / "out" / "train_metrics.json").read_text())["world_size"] == 2
    from pipeline import tracking

    client = tracking.client(store)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id])  # one run, not one per rank
    assert run.data.tags["world_size"] == "2" and run.info.status == "FINISHED"


@pytest.mark.slow
def test_compiled_step_matches_eager(shards, tmp_path):
    """train.compile: torch.compile (inductor, CPU) gives the eager losses and trains."""
    eager = Trainer(shards, tmp_path / "eager", tiny_model(), tiny_losses(), tiny_train(max_steps=2), log=quiet,
                    keep_history=True).run()
    compiled = Trainer(shards, tmp_path / "compiled", tiny_model(), tiny_losses(), tiny_train(max_steps=2, compile=True),
                       log=quiet, keep_history=True).run()
    assert len(compiled.step_losses) == 2
    for a, b in zip(eager.step_losses, compiled.step_losses):
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=2e-3, abs=1e-5), key


def test_sampler_positions_partition_the_epoch():
    data = list(range(10))
    full = list(ResumableSampler(data, 2, 0, seed=3).__iter__())
    other = ResumableSampler(data, 2, 1, seed=3)
    assert not set(full) & set(other)
    late = ResumableSampler(data, 2, 0, seed=3)
    late.set_position(0, 2)
    assert list(late) == full[2:] and len(late) == len(full) - 2
    late.set_position(1, 0)
    assert list(late) != full  # a new epoch, a new order


def test_sample_grid_layout_and_keypoints():
    source, driving = torch.zeros(3, 3, 32, 32), torch.ones(3, 3, 32, 32)
    kp = {"value": torch.tensor([[[-1.0, -1.0], [1.0, 1.0]]]).repeat(3, 1, 1)}
    outputs = {"kp_source": kp, "kp_driving": kp, "prediction": torch.full((3, 3, 32, 32), 0.5),
               "occlusion_map": torch.ones(3, 1, 8, 8)}
    grid = sample_grid(source, driving, outputs, max_rows=2)
    assert grid.shape == (64, 4 * 32, 3) and grid.dtype == np.uint8
    assert (grid[0, 0] == PALETTE[0]).all() and (grid[31, 31] == PALETTE[1]).all()
    assert (grid[16, 16] == 0).all() and (grid[16, 48] == 255).all() and (grid[16, 80] == 128).all()
    assert (grid[40, 100] == 255).all()  # occlusion map upsampled to the frame size
    dots = draw_keypoints(np.zeros((10, 10, 3), np.uint8), np.array([[np.nan, 0.0]]))
    assert not dots.any()


def test_sigterm_saves_a_checkpoint_and_exits(shards, tmp_path):
    params_yaml(tmp_path / "params.yaml", epochs=1000)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "train", "--shards", str(shards), "--no-mlflow"],
                            cwd=tmp_path, env=env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "training on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "train exited before starting"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM at step" in stderr and "Traceback" not in stderr
    state = read_checkpoint(tmp_path / "artifacts/train/checkpoint.pt")
    assert state["step"] >= 1 and state["step"] == (state["epoch"] * 2 + state["batch_in_epoch"])


def test_help_and_bad_params_are_one_line(tmp_path):
    help_text = cli(["train", "--help"], tmp_path)
    assert help_text.returncode == 0 and "--resume" in help_text.stdout and "torchrun" in help_text.stdout
    (tmp_path / "params.yaml").write_text("train:\n  batch_size: big\n")
    bad = cli(["train"], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: params.yaml: train.batch_size: expected an integer, got 'big'"
    (tmp_path / "params.yaml").write_text("train:\n  batch_size: 2\n")
    missing = cli(["train", "--shards", "nowhere"], tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "fomm shard" in missing.stderr
