"""Choosing the torch device from a user setting ("auto", "cpu", "cuda", "cuda:1", "mps")."""

from __future__ import annotations

import torch

from ..errors import FommError


def resolve_device(name: str) -> torch.device:
    """"auto" picks CUDA when available, else CPU; an unavailable device is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise FommError(f"device {name!r} is not a torch device; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FommError(f"device {name!r} requested but CUDA is not available here; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FommError(f"device {name!r} requested but MPS is not available here; use auto or cpu")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """"auto": bfloat16 where the hardware computes it natively (CPU with AVX512-BF16/AMX,
    CUDA with bf16), else float32; "float32"/"bfloat16" force it."""
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if name != "auto":
        raise FommError(f"precision {name!r} is not one of auto, float32, bfloat16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return torch.bfloat16 if native else torch.float32
    return torch.float32
