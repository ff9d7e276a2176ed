"""`dvc repro train` killed with SIGKILL: nothing it started keeps running, and the next
`dvc repro` continues from the checkpoint (persistent output) unless the params changed.

A real DVC project holding the repository's own train stage (its cmd, outs and params; the
code deps are left out since the code lives in this checkout), tiny model, 2 steps per epoch,
`train.nproc_per_node: 2` and one DataLoader worker per rank, so the tree under DVC is
sh -c -> fomm train -> torchrun -> 2 workers -> 2 DataLoader workers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from _train_helpers import REPO, build_shards, env, params_yaml
from fomm_core.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
# 20 steps: enough after the first checkpoint (step 2) that the kill lands mid-run on a loaded machine
TRAIN = dict(gan=0.0, epochs=10, num_repeats=4, num_workers=1, nproc_per_node=2, log_every=1)
STEPS = 20


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.getbasetemp())


def dvc_env() -> dict[str, str]:
    # SHELL=/bin/sh: DVC runs the stage through `sh -c`, and dash stays in between (it does not exec).
    run_env = dict(env(), PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1",
                   OMP_NUM_THREADS="1", SHELL="/bin/sh")
    run_env.pop("FOMM_MLFLOW_DIR", None)
    return run_env


def dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True, env=dvc_env(), timeout=600)
    assert result.returncode == 0, f"dvc {args}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def project(tmp_path, shards) -> Path:
    root = tmp_path / "project"
    shutil.copytree(shards, root / "artifacts" / "shards")
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    stage["deps"] = [dep for dep in stage["deps"] if dep.startswith("artifacts/")]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}))
    params_yaml(root / "params.yaml", **TRAIN)
    dvc(["init", "--no-scm", "-q"], root)
    dvc(["config", "core.analytics", "false"], root)
    return root


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, start time, command line) of every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] not in ("Z", "X"):
            table[int(entry.name)] = (int(fields[1]), int(fields[19]), cmdline)
    return table


def descendants(root: int) -> dict[int, tuple[int, int, str]]:
    table = process_table()
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, info in table.items():
            if info[0] == parent and pid not in found:
                found[pid] = info
                frontier.append(pid)
    return found


def alive(pid: int, start: int) -> bool:
    info = process_table().get(pid)
    return info is not None and info[1] == start


def checkpoint_step(path: Path) -> int:
    try:
        return int(read_checkpoint(path)["step"])
    except Exception:  # not written yet
        return 0


def test_sigkill_of_dvc_repro_leaves_no_process_and_the_next_repro_resumes(project):
    checkpoint = project / "artifacts" / "train" / "checkpoint.pt"
    log = (project / "first.log").open("w")
    repro = subprocess.Popen(["dvc", "repro", "train"], cwd=project, env=dvc_env(), stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while checkpoint_step(checkpoint) < 2 and repro.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the checkpoint at the end of epoch 1 (2 of 20 steps)
        assert repro.poll() is None, (project / "first.log").read_text()[-3000:]
        tree = descendants(repro.pid)
        commands = [cmd for _, _, cmd in tree.values()]
        workers = [pid for pid, (_, _, cmd) in tree.items()
                   if "pipeline train" in cmd and "torch.distributed.run" in tree.get(tree[pid][0], (0, 0, ""))[2]]
        assert any(cmd.startswith("/bin/sh -c fomm train") for cmd in commands), commands
        assert sum("torch.distributed.run" in cmd for cmd in commands) == 1, commands
        assert len(workers) == 2, commands
        assert sum(info[0] in workers for info in tree.values()) >= 2, commands  # their DataLoader workers

        repro.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        repro.wait(timeout=30)
        while any(alive(pid, start) for pid, (_, start, _) in tree.items()) and time.monotonic() - killed < 20:
            time.sleep(0.1)
        seconds = time.monotonic() - killed
        assert not [cmd for pid, (_, start, cmd) in tree.items() if alive(pid, start)], "orphans left running"
        print(f"all {len(tree)} processes under dvc gone {seconds:.1f} s after its SIGKILL")
        written = checkpoint.stat().st_mtime_ns
        stopped_at = read_checkpoint(checkpoint)
        time.sleep(3)
        assert checkpoint.stat().st_mtime_ns == written  # nothing writes it any more
    finally:
        log.close()
        if repro.poll() is None:
            os.killpg(repro.pid, signal.SIGKILL)
    assert 2 <= stopped_at["step"] < STEPS

    second = dvc(["repro", "train"], project)
    output = second.stdout + second.stderr
    assert (f"resuming from artifacts/train/checkpoint.pt at epoch {stopped_at['epoch']}, step {stopped_at['step']}"
            in output), output[-3000:]
    steps = [int(s) for s in re.findall(rf"train step (\d+)/{STEPS}:", output)]
    assert steps == list(range(stopped_at["step"] + 1, STEPS + 1)), output[-3000:]  # only the steps not done before
    assert read_checkpoint(checkpoint)["step"] == STEPS
    curve = (project / "artifacts" / "train" / "train_losses.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in curve[1:]] == [str(s) for s in range(1, STEPS + 1)]  # one run's curve
    assert "up to date" in dvc(["status"], project).stdout

    params_yaml(project / "params.yaml", **{**TRAIN, "lr_generator": 1e-3, "max_steps": 1})
    third = dvc(["repro", "train"], project)
    output = third.stdout + third.stderr
    assert ("artifacts/train/checkpoint.pt was trained with another train.lr_generator; starting from scratch"
            in output), output[-3000:]
    assert read_checkpoint(checkpoint)["step"] == 1
