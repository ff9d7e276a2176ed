"""DDP plumbing: one process per GPU (or CPU process with gloo), rank 0 logs and saves.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; tests may pass an explicit
``init_method`` (``file://...``) instead. Without either, training is single-process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_dist_info() -> DistInfo:
    """The process's place in a ``torchrun`` job (single process when not under torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(kind: str, info: DistInfo) -> torch.device:
    """``auto`` picks CUDA when present; each rank takes the GPU of its local rank."""
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            from ..errors import FommError
            raise FommError("train.device is 'cuda' but no CUDA GPU is visible; use device: auto or cpu")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def init_process_group(info: DistInfo, device: torch.device, init_method: str | None = None) -> None:
    """NCCL on GPUs, gloo on CPU; a no-op for a single process or when already initialised."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend, init_method=init_method or "env://", rank=info.rank,
                            world_size=info.world_size, **kwargs)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks in place (identity for one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any: ranks agree on when to stop (one tiny collective)."""
    if not info.enabled:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gradient_sync(module: torch.nn.Module, enabled: bool):
    """A context in which DDP all-reduces gradients on backward only when ``enabled``.

    Gradient accumulation syncs on the last micro-batch of a step; the earlier ones add
    to the local gradients (``DistributedDataParallel.no_sync``). A no-op for one process.
    """
    inner = getattr(module, "_orig_mod", module)  # through torch.compile
    if enabled or not hasattr(inner, "no_sync"):
        return contextlib.nullcontext()
    return inner.no_sync()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap_ddp(module: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """DistributedDataParallel around ``module`` when running on several ranks."""
    if not info.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def broadcast_buffers(modules, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank.

    DDP syncs buffers at the start of each forward, so after the last step each rank holds
    statistics of its own last batch; this makes the final models identical everywhere.
    """
    if not info.enabled:
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)
