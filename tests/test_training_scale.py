"""Training at scale: gradient accumulation, `train.nproc_per_node`, two torchrun "nodes", world-size resume."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _train_helpers import REPO, build_shards, cli, env, params_yaml, tiny_losses, tiny_model, tiny_train
from fomm_core.checkpoint import read_checkpoint
from fomm_core.training import Trainer


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.getbasetemp())


def quiet(*args, **kwargs):
    pass


def gradients(trainer: Trainer) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}
            for name, module in trainer.models().items()}


def worst_gradient_error(a: dict, b: dict) -> float:
    """max |a - b| over a network's gradients, relative to that network's largest gradient.

    Measured against the network's scale rather than per tensor: a conv bias that feeds a
    normalisation (or the softmax of the keypoint heatmaps) has an exactly-zero gradient in
    theory, so its per-tensor relative error is only float noise over noise.
    """
    assert a.keys() == b.keys()
    worst = 0.0
    for name in a:
        assert a[name].keys() == b[name].keys() and a[name], name
        scale = max(g.abs().max().item() for g in a[name].values())
        worst = max(worst, max((a[name][k] - b[name][k]).abs().max().item() / scale for k in a[name]))
    return worst


def test_accumulated_micro_batches_give_the_large_batch_gradients(shards, tmp_path):
    """2 micro-batches of 2 (accumulate_steps 2) vs one batch of 4, GAN and equivariance on.

    Equal (to float rounding) where no layer mixes samples of a batch: with BatchNorm on its
    running statistics and spectral norm on its current estimate (eval mode; nothing else in
    these networks depends on the mode), every gradient of the detector, generator and
    discriminator, and every reported loss, match. In training mode BatchNorm normalises each
    micro-batch by its own statistics (as each GPU does under DDP without SyncBatchNorm), so
    the gradients differ from the big batch's; the same measure shows that.
    """
    torch.set_num_threads(2)
    big = Trainer(shards, tmp_path / "big", tiny_model(), tiny_losses(gan=1.0), tiny_train(batch_size=4, num_repeats=4),
                  log=quiet)
    small = Trainer(shards, tmp_path / "small", tiny_model(), tiny_losses(gan=1.0),
                    tiny_train(batch_size=2, accumulate_steps=2, num_repeats=4), log=quiet)
    assert small.steps_per_epoch == big.steps_per_epoch  # 2 x 2 samples per step either way
    batch = next(iter(big.loader))
    halves = [{k: v[:2] for k, v in batch.items()}, {k: v[2:] for k, v in batch.items()}]

    errors = {}
    for mode in ("eval", "train"):
        for trainer in (big, small):
            for module in trainer.models().values():
                module.train(mode == "train")
            trainer.step = 1  # the same equivariance warps (drawn per step, split across micro-batches)
        big_losses, _ = big.train_step([batch])
        small_losses, _ = small.train_step(halves)
        errors[mode] = worst_gradient_error(gradients(big), gradients(small))
        if mode == "eval":
            assert big_losses.keys() == small_losses.keys() >= {"perceptual", "equivariance_value", "generator_gan",
                                                                "feature_matching", "discriminator_gan"}
            for key in big_losses:
                assert small_losses[key] == pytest.approx(big_losses[key], rel=1e-5), key
    assert errors["eval"] < 1e-5, errors  # measured: 1.7e-6
    assert errors["train"] > 1e-2, errors  # measured: 1.8 (BatchNorm statistics per micro-batch)


def test_nproc_per_node_runs_torchrun_and_a_resume_with_another_world_size_is_refused(shards, tmp_path):
    """`train.nproc_per_node: 2` makes plain `fomm train` (the DVC command) train on 2 gloo ranks;
    the checkpoint then refuses to continue in one process (its data order and global batch)."""
    params_yaml(tmp_path / "params.yaml", gan=1.0, epochs=1, nproc_per_node=2)
    store = tmp_path / "store"
    run_env = dict(env(), FOMM_MLFLOW_DIR=str(store), OMP_NUM_THREADS="1")
    result = cli(["train", "--shards", str(shards), "--out", "out"], tmp_path, env=run_env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting 2 processes with torchrun" in result.stderr
    assert result.stderr.count("training on cpu (2 process(es))") == 1  # rank 0 alone logs
    state = read_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert state["world_size"] == 2 and state["epoch"] == 1  # 4 items per epoch: 2 ranks x batch 2 = 1 step
    assert state["step"] == 1 and "discriminator" in state
    assert json.loads((tmp_path / "out" / "train_metrics.json").read_text())["world_size"] == 2
    assert (tmp_path / "out" / "train_losses.tsv").read_text().splitlines()[0].startswith("step\tperceptual\t")
    from pipeline import tracking

    client = tracking.client(store)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id])  # one run, not one per rank
    assert run.data.tags["world_size"] == "2" and run.info.status == "FINISHED"

    params_yaml(tmp_path / "params.yaml", gan=1.0, epochs=2, nproc_per_node=1)  # one more epoch, one process
    before = (tmp_path / "out" / "checkpoint.pt").read_bytes()
    refused = cli(["train", "--shards", str(shards), "--out", "out", "--no-mlflow"], tmp_path, env=run_env)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert "trained by 2 process(es), this run has 1" in line and "--fresh" in line, line
    params_yaml(tmp_path / "params.yaml", gan=1.0, epochs=2, nproc_per_node=3)  # refused before torchrun starts
    refused = cli(["train", "--shards", str(shards), "--out", "out", "--no-mlflow"], tmp_path, env=run_env)
    assert refused.returncode == 2 and "starting 3 processes" not in refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert "trained by 2 process(es), this run has 3" in line, line
    assert (tmp_path / "out" / "checkpoint.pt").read_bytes() == before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_node_torchrun_on_localhost_trains_identical_weights(shards, tmp_path):
    """Two torchrun launchers (`--nnodes 2`, one process each) meet at a c10d rendezvous on
    localhost, as two machines would; gloo; each rank dumps its weights after 2 steps."""
    port = free_port()
    results = tmp_path / "ranks"
    results.mkdir()
    run_env = dict(env(), OMP_NUM_THREADS="1")
    launchers = []
    started = time.perf_counter()
    for node in range(2):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes",
                   "--max-restarts", "0", str(REPO / "tests" / "_torchrun_worker.py"),
                   str(shards), str(tmp_path / f"out{node}"), str(results), "2"]
        launchers.append(subprocess.Popen(command, cwd=tmp_path, env=run_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [launcher.communicate(timeout=400)[0] for launcher in launchers]
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
    seconds = time.perf_counter() - started
    for launcher, output in zip(launchers, outputs):
        assert launcher.returncode == 0, output[-3000:]
    ranks = [torch.load(results / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [2, 2]
    a, b = ranks[0]["weights"], ranks[1]["weights"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = [read_checkpoint(tmp_path / f"out{n}" / "checkpoint.pt") for n in range(2)
             if (tmp_path / f"out{n}" / "checkpoint.pt").exists()]
    assert len(saved) == 1 and saved[0]["world_size"] == 2  # only global rank 0 wrote, on one "node"
    assert all(torch.equal(saved[0]["generator"][k], a[f"generator.{k}"]) for k in saved[0]["generator"])
    print(f"two-node run: {seconds:.1f} s")
