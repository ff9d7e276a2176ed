"""The FOMM checkpoint format, shared by training (writes, resumes) and inference (reads).

One ``torch.save`` dict of tensors and plain values only, so it loads with
``weights_only=True``; written atomically so a kill mid-save keeps the previous file.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, NamedTuple

import torch
from torch import nn

from .atomic import atomic_path
from .config import from_mapping, to_mapping
from .errors import FommError
from .model_config import ModelConfig
from .weights import load_checkpoint

FORMAT = "fomm-checkpoint-v1"
MODEL_KEYS = ("kp_detector", "generator", "discriminator")
IDENTITY_KEYS = ("kp_detector", "generator")  # what keypoints and rendered frames depend on


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model_config: ModelConfig,
    models: dict[str, nn.Module],
    extra: dict[str, Any] | None = None,
) -> None:
    """Save ``models`` (a subset of MODEL_KEYS) plus ``extra`` plain state (optimizers, step...)."""
    unknown = set(models) - set(MODEL_KEYS)
    if unknown:
        raise ValueError(f"unknown model names {sorted(unknown)}; expected some of {MODEL_KEYS}")
    state: dict[str, Any] = {"format": FORMAT, "model_config": to_mapping(model_config)}
    for name, module in models.items():
        state[name] = cpu_state_dict(module)
    write_state(path, state, extra)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights on the CPU, through DistributedDataParallel / torch.compile wrappers."""
    module = getattr(module, "module", module)  # unwrap DistributedDataParallel
    module = getattr(module, "_orig_mod", module)  # unwrap torch.compile
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def write_state(path: str | os.PathLike, state: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """``state`` plus ``extra`` (which may not shadow its keys), saved atomically."""
    if extra:
        clash = set(extra) & set(state)
        if clash:
            raise ValueError(f"extra keys {sorted(clash)} clash with the checkpoint's own keys")
        state = {**state, **extra}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict (``weights_only=True``), checked for the format marker."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FommError(f"{path}: not a {FORMAT} checkpoint; was it written by `fomm train`?")
    return state


def checkpoint_model_config(state: dict[str, Any], path: str | os.PathLike = "checkpoint") -> ModelConfig:
    return from_mapping(ModelConfig, state["model_config"], f"{path}: model_config")


def weights_sha256(state: dict[str, Any], where: str | os.PathLike = "checkpoint") -> str:
    """SHA-256 of a checkpoint's detector and generator weights: which FOMM this is.

    Hashes every tensor's name, dtype, shape and bytes, so the training checkpoint, its
    ``fomm.pt`` copy and an export/import round trip share it, while weights from any other
    run (or of another keypoint count) never do. Keypoint, syncer and talker files record
    it, and every step that combines them checks it.
    """
    digest = hashlib.sha256()
    for network in IDENTITY_KEYS:
        weights = state.get(network)
        if not isinstance(weights, dict):
            raise FommError(f"{where}: checkpoint has no {network} weights")
        for name in sorted(weights):
            tensor = weights[name].detach().cpu().contiguous()
            digest.update(f"{network}.{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_weights_sha256(path: str | os.PathLike) -> str:
    """:func:`weights_sha256` of the checkpoint file at ``path``."""
    return weights_sha256(read_checkpoint(path), path)


class InferenceModels(NamedTuple):
    """What evaluation and animation need from a checkpoint.

    ``frame_size`` is the resolution it was trained at, None when the checkpoint does not
    say (not written by ``fomm train``): callers then keep their input's size.
    """

    kp_detector: nn.Module
    generator: nn.Module
    config: ModelConfig
    frame_size: int | None
    perceptual_backbone: str | None = None  # "pretrained" | "random" as trained (None: unknown)
    fomm_sha256: str = ""  # weights_sha256 of the checkpoint


def checkpoint_frame_size(state: dict[str, Any]) -> int | None:
    train = state.get("train_config")
    size = train.get("frame_size") if isinstance(train, dict) else None
    return int(size) if isinstance(size, int) and size > 0 else None


def load_inference_models(path: str | os.PathLike, device: str | torch.device = "cpu") -> InferenceModels:
    """Detector and generator in eval mode, their config and training frame size."""
    from .models import build_models

    state = read_checkpoint(path)
    config = checkpoint_model_config(state, path)
    kp_detector, generator, _ = build_models(config)
    for name, module in (("kp_detector", kp_detector), ("generator", generator)):
        if name not in state:
            raise FommError(f"{path}: checkpoint has no {name} weights")
        try:
            module.load_state_dict(state[name])
        except RuntimeError as exc:
            raise FommError(f"{path}: {name} weights do not match its model_config ({str(exc).splitlines()[0]})") from None
    losses = state.get("loss_config")
    backbone = losses.get("perceptual_backbone") if isinstance(losses, dict) else None
    return InferenceModels(kp_detector.to(device).eval(), generator.to(device).eval(), config,
                           checkpoint_frame_size(state), backbone if isinstance(backbone, str) else None,
                           weights_sha256(state, path))


def write_inference_copy(checkpoint: str | os.PathLike, target: str | os.PathLike) -> None:
    """The detector and generator weights, model config and frame size, without optimizer state.

    Makes the talker's model folder self-contained (and a fraction of the training
    checkpoint's size); :func:`weights_sha256` is unchanged by the copy.
    """
    state = read_checkpoint(checkpoint)
    missing = [k for k in IDENTITY_KEYS if k not in state]
    if missing:
        raise FommError(f"{checkpoint}: no {', '.join(missing)} weights; was it written by `fomm train`?")
    keep = {k: v for k, v in state.items() if k in ("format", "model_config", *IDENTITY_KEYS)}
    keep["train_config"] = {"frame_size": (state.get("train_config") or {}).get("frame_size")}
    keep["loss_config"] = {"perceptual_backbone": (state.get("loss_config") or {}).get("perceptual_backbone")}
    write_state(target, keep)


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    """Dotted path of the first value that differs between two nested mappings, else None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{where}.{key}")
            if found:
                return found
        return None
    return None if a == b else f"{where} ({a!r} there, {b!r} here)"


def init_models_from(path: str | os.PathLike, models: dict[str, nn.Module], config: ModelConfig) -> str:
    """Load ``path``'s weights into freshly built ``models`` (fine-tuning); returns a line for the log.

    The detector and generator must be the model ``config`` describes (every section but
    ``discriminator``). The discriminator is loaded when the checkpoint has one of the same
    config, else it keeps its fresh initialisation (e.g. adversarial fine-tuning of vox-256).
    """
    state = read_checkpoint(path)
    theirs, ours = to_mapping(checkpoint_model_config(state, path)), to_mapping(config)
    difference = _first_difference({k: v for k, v in theirs.items() if k != "discriminator"},
                                   {k: v for k, v in ours.items() if k != "discriminator"}, "model")
    if difference:
        raise FommError(f"train.init_from {path}: its model differs from params.yaml at {difference}; set the model "
                        "section to the checkpoint's (for an imported published model: `fomm profile <name>`)")
    loaded, fresh = [], []
    for name, module in models.items():
        same_config = name != "discriminator" or theirs["discriminator"] == ours["discriminator"]
        if name not in state or not same_config:
            fresh.append(name)
            continue
        try:
            module.load_state_dict(state[name])
        except RuntimeError as exc:
            raise FommError(f"train.init_from {path}: {name} weights do not match its model_config "
                            f"({str(exc).splitlines()[0]})") from None
        loaded.append(name)
    missing = [n for n in fresh if n != "discriminator"]
    if missing:
        raise FommError(f"train.init_from {path}: checkpoint has no {', '.join(missing)} weights")
    origin = state.get("imported_from", {}).get("file") if isinstance(state.get("imported_from"), dict) else None
    note = f"weights of {', '.join(loaded)} from {path}" + (f" (imported from {origin})" if origin else "")
    return note + (f"; {', '.join(fresh)} freshly initialised" if fresh else "") + "; optimizer state fresh"
