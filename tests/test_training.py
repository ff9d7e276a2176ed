"""fomm train: losses, checkpoints, exact resume, NaN stop, SIGTERM, DDP on CPU, bf16, CLI errors."""

from __future__ import annotations

import json
import math
import os
import re
import select
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
from fomm_core.training import Trainer, TrainingInterrupted
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
    # 2 steps per epoch, 6 steps: a stop request (what SIGTERM does) at step 3 falls mid-epoch,
    # after an lr milestone, and inside a log interval (log_every 2: the interval's sums
    # travel in the checkpoint).
    straight = Trainer(shards, tmp_path / "a", tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=6, log_every=2),
                       keep_history=True, log=quiet)
    full = straight.run()
    assert full.steps == 6 and len(full.step_losses) == 6
    assert all(math.isfinite(v) for losses in full.step_losses for v in losses.values())
    assert {"perceptual", "equivariance_value", "equivariance_jacobian", "generator_gan", "feature_matching",
            "discriminator_gan"} <= set(full.step_losses[0])

    first_losses = []
    first = Trainer(shards, tmp_path / "b", tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=6, log_every=2),
                    log=quiet)

    def stop_at_step_3(report):
        first_losses.append(dict(report.losses))
        if report.step == 3:
            first.request_stop()

    first.on_step = stop_at_step_3
    with pytest.raises(TrainingInterrupted) as stopped:
        first.run()
    assert stopped.value.step == 3
    saved = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (3, 1, 1)
    with (tmp_path / "b" / "train_losses.tsv").open("a") as curve:
        curve.write("4\t1.0\t")  # a row a killed run was writing after its checkpoint
    resumed = Trainer(shards, tmp_path / "b", tiny_model(), tiny_losses(gan=1.0), tiny_train(max_steps=6, log_every=2),
                      keep_history=True, resume="require", log=quiet)
    assert resumed.step == 3
    rest = resumed.run()
    assert first_losses + rest.step_losses == full.step_losses
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The curve (rows at steps 2, 4, 6) and the final metrics read as one uninterrupted run.
    curve = (tmp_path / "a" / "train_losses.tsv").read_text()
    assert [row.split("\t")[0] for row in curve.splitlines()] == ["step", "2", "4", "6"]
    assert (tmp_path / "b" / "train_losses.tsv").read_text() == curve
    metrics = [json.loads((tmp_path / run / "train_metrics.json").read_text()) for run in ("a", "b")]
    assert metrics[0]["losses"] == metrics[1]["losses"] and metrics[1]["steps_this_run"] == 3
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


def run_on_a_terminal(command: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as stdin/stdout/stderr; its exit code and output."""
    master, slave = os.openpty()
    proc = subprocess.Popen(command, cwd=cwd, env=dict(env(), TERM="xterm-256color", COLUMNS="200"),
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side closed (the process exited)
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def test_progress_is_a_bar_on_a_terminal_and_loss_lines_in_a_log(shards, tmp_path):
    params_yaml(tmp_path / "params.yaml", epochs=1, log_every=1)  # 2 steps
    logged = cli(["train", "--shards", str(shards), "--out", "log", "--no-mlflow"], tmp_path)
    assert logged.returncode == 0, logged.stderr
    lines = [line for line in logged.stderr.splitlines() if line.startswith("train step ")]
    assert [line.split(":")[0] for line in lines] == ["train step 1/2", "train step 2/2"], logged.stderr
    assert "perceptual" in lines[0] and "samples/s" in lines[0]

    code, shown = run_on_a_terminal([sys.executable, "-m", "pipeline", "train", "--shards", str(shards), "--out", "tty",
                                     "--no-mlflow"], tmp_path)
    assert code == 0, shown[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)  # without the terminal's colour and cursor codes
    assert re.search(r"train ━+ 2/2 perceptual [0-9.]+ .*total [0-9.]+ [0-9.]+ samples/s", plain), plain[-2000:]
    assert "train step 1/2:" not in shown  # no plain loss lines under the bar
