"""Whether a checkpoint may be continued, so a resumed run ends where a fresh one would.

A checkpoint records its run identity: the model, losses and train settings that shape the
trajectory, the shards it read and the training code. Settings that only say how far to go
or how to report (``RUN_LENGTH_KEYS``) are left out, so raising ``train.epochs`` continues a
finished run; the world size is checked on its own, because the data order and the global
batch depend on it. With DVC the checkpoint is a persistent output: a stage re-run after a
kill continues it, a re-run after a change of params, data or code starts fresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import to_mapping
from ..errors import FommError
from ..losses import LossConfig
from ..model_config import ModelConfig
from .config import TrainConfig

ResumeMode = Literal["never", "auto", "require"]
RUN_LENGTH_KEYS = ("epochs", "max_steps", "checkpoint_every", "log_every", "image_log_every", "num_workers",
                   "nproc_per_node")
CODE_ROOT = Path(__file__).resolve().parents[1]  # the fomm_core package
# The code a training trajectory depends on (the train stage's code deps in dvc.yaml): an
# unrelated edit (the talker, inference) must not throw a long run's progress away.
TRAINING_CODE = ("models", "losses", "training", "data", "geometry.py", "model_config.py", "config.py",
                 "weights.py", "checkpoint.py")


def code_fingerprint(root: Path = CODE_ROOT) -> str:
    """sha256 over the training code's Python sources (paths and bytes)."""
    digest = hashlib.sha256()
    files = sorted(path for name in TRAINING_CODE
                   for path in ((root / name).rglob("*.py") if (root / name).is_dir() else [root / name]))
    for path in files:
        digest.update(f"\n{path.relative_to(root).as_posix()}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_identity(model: ModelConfig, losses: LossConfig, train: TrainConfig, shards_sha256: str,
                 code_sha256: str) -> dict[str, Any]:
    """What a continued run must share with the checkpoint (JSON-plain, stored in it)."""
    train_settings = {k: v for k, v in to_mapping(train).items() if k not in RUN_LENGTH_KEYS}
    identity = {"model": to_mapping(model), "losses": to_mapping(losses), "train": train_settings,
                "shards_sha256": shards_sha256, "code_sha256": code_sha256}
    return json.loads(json.dumps(identity))  # tuples -> lists, exactly as a checkpoint returns them


def first_difference(saved: Any, current: Any, where: str = "") -> str | None:
    """The dotted key of the first setting that differs, e.g. ``train.lr_generator``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            found = first_difference(saved.get(key), current.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    return None if saved == current else where or "(all)"


@dataclass(frozen=True)
class ResumeDecision:
    resume: bool
    note: str  # one line for the log: why this run resumes or starts fresh


def decide(state: dict[str, Any] | None, path: Path, identity: dict[str, Any], world_size: int,
           target_steps: int, mode: ResumeMode) -> ResumeDecision:
    """Resume ``state`` (the checkpoint at ``path``, None when absent) or start fresh.

    ``auto`` resumes a matching checkpoint and starts fresh from any other (saying why);
    ``require`` (``--resume``) raises instead of starting fresh, except when there is no
    checkpoint yet; both refuse a checkpoint of another world size (its data order and
    global batch cannot be continued). ``never`` (``--fresh``) always starts fresh.
    """
    if mode == "never":
        return ResumeDecision(False, "starting from scratch (--fresh)" if state is not None else "starting from scratch")
    if state is None:
        return ResumeDecision(False, f"no checkpoint at {path}; starting from scratch")
    saved = state.get("run_identity")
    if not isinstance(saved, dict):
        why = f"{path} has no run identity (written by an older fomm)"
        return _fresh_or_refuse(mode, why)
    differs = first_difference(saved, identity)
    if differs == "code_sha256" and mode == "require":
        differs = None  # an explicit --resume may continue across a code change
        code_note = " (the training code changed since it was saved)"
    else:
        code_note = ""
    if differs is not None:
        what = {"shards_sha256": "other shards", "code_sha256": "other training code"}.get(differs, f"another {differs}")
        return _fresh_or_refuse(mode, f"{path} was trained with {what}")
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        raise FommError(
            f"{path} was trained by {saved_world} process(es), this run has {world_size}: the data order and global "
            f"batch would change; resume with {saved_world} process(es) (train.nproc_per_node / torchrun), or pass "
            "--fresh or another --out to start over")
    step = int(state.get("step", 0))
    if step > target_steps and mode == "auto":
        return ResumeDecision(False, f"{path} is at step {step}, past this run's {target_steps} steps; "
                                     "starting from scratch")
    return ResumeDecision(True, f"resuming from {path} at epoch {state.get('epoch')}, step {step}{code_note}")


def _fresh_or_refuse(mode: ResumeMode, why: str) -> ResumeDecision:
    if mode == "require":
        raise FommError(f"{why}; cannot --resume it: train with the settings it was saved with, or drop --resume "
                        "to start fresh")
    return ResumeDecision(False, f"{why}; starting from scratch")


def check_before_launch(checkpoint: Path, model: ModelConfig, losses: LossConfig, train: TrainConfig,
                        shards: Path, world_size: int, mode: ResumeMode) -> None:
    """Raise now what every one of ``world_size`` workers would raise on this checkpoint
    (another world size, or ``--resume`` of a mismatching run), before a launcher starts them."""
    if mode == "never" or not checkpoint.exists():
        return
    from ..checkpoint import read_checkpoint
    from .fingerprint import shards_fingerprint

    identity = run_identity(model, losses, train, shards_fingerprint(shards), code_fingerprint())
    decide(read_checkpoint(checkpoint), checkpoint, identity, world_size, 2**62, mode)
