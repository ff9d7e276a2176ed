"""Talker and syncer checkpoint files: config mapping + weights, nothing executable.

Each is one ``torch.save`` dict of plain values and tensors (loads with
``weights_only=True``), written atomically; the normalisation statistics are buffers, so
they travel inside the state dict. ``fomm_sha256`` records the FOMM weights whose
keypoints the model learned (see :mod:`.provenance`); loading sets the module's
``fomm_sha256`` attribute ("" for files written before it was recorded).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..checkpoint import cpu_state_dict, write_state
from ..config import from_mapping, to_mapping
from ..errors import FommError
from ..weights import load_checkpoint
from .config import SyncerConfig, TalkerModelConfig
from .generator import Talker
from .syncer import Syncers

TALKER_FORMAT = "fomm-talker-v1"
SYNCERS_FORMAT = "fomm-syncers-v1"


def _save(path, fmt: str, config, module: nn.Module, extra: dict[str, Any] | None) -> None:
    write_state(path, {"format": fmt, "config": to_mapping(config), "state_dict": cpu_state_dict(module),
                       "fomm_sha256": module.fomm_sha256}, extra)


def _load(path, fmt: str, config_cls, build, device) -> tuple[nn.Module, dict[str, Any]]:
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise FommError(f"{path}: not a {fmt} checkpoint; point at the file the talker training wrote")
    config = from_mapping(config_cls, state.get("config"), f"{path}: config")
    module = build(config)
    try:
        module.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FommError(f"{path}: weights do not match the stored config ({first[:200]}); retrain") from None
    recorded = state.get("fomm_sha256")
    module.fomm_sha256 = recorded if isinstance(recorded, str) else ""
    return module.to(device).eval(), state


def save_talker_checkpoint(path: str | os.PathLike, talker: Talker, extra: dict[str, Any] | None = None) -> None:
    _save(path, TALKER_FORMAT, talker.config, talker, extra)


def load_talker_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Talker:
    """The talker in eval mode; FommError for a missing, corrupt or mismatched file."""
    return _load(path, TALKER_FORMAT, TalkerModelConfig, Talker, device)[0]


def save_syncers_checkpoint(path: str | os.PathLike, syncers: Syncers, extra: dict[str, Any] | None = None) -> None:
    _save(path, SYNCERS_FORMAT, syncers.config, syncers, extra)


def load_syncers_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Syncers:
    """The syncers in eval mode; FommError for a missing, corrupt or mismatched file."""
    return _load(path, SYNCERS_FORMAT, SyncerConfig, Syncers, device)[0]
