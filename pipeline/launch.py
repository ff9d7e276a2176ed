"""Starting ``fomm train`` under torchrun from ``train.nproc_per_node``, so one command (and
one DVC stage) trains on every GPU of a machine.

The launcher stays the parent of torchrun instead of exec-ing it: it keeps watching its own
parent (``pipeline.lifecycle``: a killed ``dvc repro`` takes it down), torchrun dies with it
(``PR_SET_PDEATHSIG``), and the workers, which are ``fomm`` processes too, die with torchrun.
SIGTERM and SIGINT are passed on, so the workers checkpoint and stop as a single process would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pipeline.lifecycle import child_preexec


def under_torchrun() -> bool:
    """True in a process torchrun started (it sets these for every worker)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def processes_per_node(nproc_per_node: int) -> int:
    """``train.nproc_per_node``, with 0 meaning one process per visible GPU (1 without GPUs)."""
    if nproc_per_node > 0:
        return nproc_per_node
    import torch

    return max(1, torch.cuda.device_count())


def torchrun_command(nproc: int, fomm_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "pipeline", *fomm_args]


def run_under_torchrun(nproc: int, fomm_args: list[str]) -> int:
    """Run ``fomm <fomm_args>`` as ``nproc`` torchrun workers; returns their exit code.

    torchrun reports a worker stopped by SIGTERM as a failure; a stop we passed on is
    reported as 143 (128 + SIGTERM), like a single process that checkpointed and stopped.
    """
    process = subprocess.Popen(torchrun_command(nproc, fomm_args), preexec_fn=child_preexec)
    forwarded: list[int] = []

    def forward(signum, frame) -> None:
        forwarded.append(signum)
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if forwarded and code != 0:
        return 128 + forwarded[0]
    return code
