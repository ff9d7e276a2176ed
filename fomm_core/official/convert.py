"""Import the published FOMM checkpoints (``vox-adv-cpk.pth.tar`` + its YAML) and export ours.

An original checkpoint is one ``torch.save`` dict: ``generator``, ``kp_detector`` and
(sometimes) ``discriminator`` state dicts, ``optimizer_*`` Adam states and ``epoch``. Import
renames every tensor to this project's modules (:mod:`.layout`), checks each name and
shape against the model the YAML describes, and writes a normal ``fomm-checkpoint-v1``
whose model config carries the original conventions, so every ``fomm`` command uses it as
it is. Export is the exact reverse: same tensors, original names, plus the anti-alias
kernels and Adam states (by the original parameter order) the original code expects.

Files are read with ``weights_only=True``: a pickle that would run code is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
import yaml

from ..atomic import atomic_path, write_text_atomic
from ..checkpoint import (FORMAT, checkpoint_model_config, cpu_state_dict, read_checkpoint, save_checkpoint,
                          weights_sha256)
from ..config import ConfigError, to_mapping
from ..errors import FommError
from ..model_config import ModelConfig
from ..weights import load_checkpoint, sha256_of_file
from . import layout
from .config import (ADAM_BETAS, frame_size_from_official, model_config_from_official, official_model_params,
                     official_train_params, unexpressible_conventions)

OPTIMIZER_KEYS = {name: f"optimizer_{name}" for name in layout.NETWORKS}
EXPORT_MARK = "fomm_export"  # extra top-level key of our exports (the original code reads only its own keys)
CONFIG_HEADER = "# Written by fomm export-checkpoint"
KERNEL_TOLERANCE = 1e-5
DEFAULT_LR = 2e-4  # every original config's learning rate: for fresh optimizer states of YAMLs without one


def _plain(value: Any) -> Any:
    """YAML data as str/int/float/bool/None/list/dict only, so the checkpoint loads weights_only."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class ImportedCheckpoint(NamedTuple):
    out: Path
    model_config: ModelConfig
    frame_size: int
    networks: list[str]  # which networks the file held
    epoch: int | None
    fomm_sha256: str  # weights_sha256 of the written checkpoint


def read_official_config(path: str | os.PathLike) -> dict[str, Any]:
    """The YAML mapping of an original config file, with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FommError(f"config not found: {path}; pass the original YAML (e.g. config/vox-adv-256.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise FommError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise FommError(f"{path}: expected a YAML mapping (an original FOMM config with model_params)")
    return data


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _project_state(network: str, file_state: Mapping[str, Any], expected: dict[str, torch.Tensor],
                   config: ModelConfig, scale_keys: dict[str, str], where: str) -> dict[str, torch.Tensor]:
    """``file_state`` (original names) as our state dict for ``expected`` (our names -> our tensors)."""
    if not isinstance(file_state, Mapping):
        raise FommError(f"{where}: '{network}' is not a state dict")
    hint = "use the YAML the checkpoint was trained with"
    out: dict[str, torch.Tensor] = {}
    used = set()
    for name, ours in expected.items():
        original = layout.official_name(network, name, scale_keys)
        value = file_state.get(original)
        if value is None:
            if name.endswith("num_batches_tracked"):  # absent from files of torch < 0.4.1
                out[name] = torch.zeros_like(ours)
                continue
            raise FommError(f"{where}: {network} has no tensor '{original}' that the config's model needs; the "
                            f"config does not match the weights (or the file is incomplete): {hint}")
        if not torch.is_tensor(value):
            raise FommError(f"{where}: {network} entry '{original}' is not a tensor")
        if tuple(value.shape) != tuple(ours.shape):
            raise FommError(f"{where}: {network} tensor '{original}' has shape {_fmt_shape(value.shape)} but the "
                            f"config's model needs {_fmt_shape(ours.shape)}: {hint}")
        out[name] = value.detach().to(ours.dtype).clone()
        used.add(original)
    for original, kernel in layout.official_only_buffers(network, config).items():
        value = file_state.get(original)
        if value is None:
            raise FommError(f"{where}: {network} has no anti-alias kernel '{original}': {hint}")
        if (not torch.is_tensor(value) or tuple(value.shape) != tuple(kernel.shape)
                or not torch.allclose(value.float(), kernel, atol=KERNEL_TOLERANCE)):
            raise FommError(f"{where}: {network} '{original}' is not the anti-alias kernel of the config's "
                            f"scale_factor: {hint}")
        used.add(original)
    extra = [k for k in file_state if k not in used]
    if extra:
        raise FommError(f"{where}: {network} tensor '{extra[0]}' has no place in the config's model ({len(extra)} "
                        f"such); {hint}")
    return out


def import_checkpoint(source: str | os.PathLike, config_path: str | os.PathLike,
                      out: str | os.PathLike) -> ImportedCheckpoint:
    """Convert an original checkpoint + YAML into a ``fomm-checkpoint-v1`` at ``out``."""
    from ..models import build_models

    source, config_path, out = Path(source), Path(config_path), Path(out)
    official = read_official_config(config_path)
    try:
        config, scale_keys = model_config_from_official(official, str(config_path))
        frame_size = frame_size_from_official(official, str(config_path))
    except ConfigError as exc:
        raise FommError(str(exc)) from None
    state = load_checkpoint(source)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        raise FommError(f"{source}: already a {FORMAT} checkpoint; use it directly (import converts the original "
                        "code's .pth.tar files)")
    missing = [k for k in ("kp_detector", "generator") if not isinstance(state, dict) or k not in state]
    if missing:
        raise FommError(f"{source}: not an original FOMM checkpoint (no '{missing[0]}' state dict); pass the "
                        ".pth.tar file of the first-order-model code")

    modules = dict(zip(layout.NETWORKS, build_models(config)))
    networks = [n for n in layout.NETWORKS if n in state and state[n] is not None]
    where = f"{source} with {config_path.name}"
    for name in networks:
        converted = _project_state(name, state[name], modules[name].state_dict(), config, scale_keys, where)
        modules[name].load_state_dict(converted)
    epoch = state.get("epoch")
    epoch = int(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else None
    extra = {
        "train_config": {"frame_size": frame_size},
        "loss_config": {"perceptual_backbone": "pretrained"},  # the original trains on ImageNet VGG-19 features
        "imported_from": {"file": source.name, "sha256": sha256_of_file(source), "config_file": config_path.name,
                          "config_sha256": sha256_of_file(config_path), "epoch": epoch, "config": _plain(official)},
    }
    save_checkpoint(out, model_config=config, models={n: modules[n] for n in networks}, extra=extra)
    identity = weights_sha256({n: cpu_state_dict(modules[n]) for n in ("kp_detector", "generator")}, out)
    return ImportedCheckpoint(out, config, frame_size, networks, epoch, identity)


def _peek(path: Path) -> Any:
    """The torch file's top level without reading its tensors (None when it is not one)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # any unreadable file is simply not ours
        return None


def is_imported_checkpoint(path: str | os.PathLike) -> bool:
    """True for a file ``import_checkpoint`` wrote (an output it may replace)."""
    state = _peek(Path(path))
    return isinstance(state, dict) and state.get("format") == FORMAT and "imported_from" in state


def is_exported_checkpoint(path: str | os.PathLike) -> bool:
    """True for a file ``export_checkpoint`` wrote."""
    state = _peek(Path(path))
    return isinstance(state, dict) and EXPORT_MARK in state


def is_exported_config(path: str | os.PathLike) -> bool:
    """True for a YAML ``export_checkpoint`` wrote (its first line says so)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith(CONFIG_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


# ---------------------------------------------------------------- export


def _official_state(network: str, module: torch.nn.Module, config: ModelConfig,
                    scale_keys: dict[str, str]) -> dict[str, torch.Tensor]:
    ours = cpu_state_dict(module)
    renamed = {layout.official_name(network, k, scale_keys): v for k, v in ours.items()}
    renamed.update(layout.official_only_buffers(network, config))
    return {k: renamed[k] for k in layout.official_order(network, renamed)}


def _official_optimizer(network: str, module: torch.nn.Module, state: Mapping | None, lr: float,
                        scale_keys: dict[str, str]) -> dict[str, Any]:
    """Our Adam state re-indexed to the original module's parameter order (fresh when absent)."""
    names = [name for name, _ in module.named_parameters()]
    order = layout.official_order(network, [layout.official_name(network, n, scale_keys) for n in names])
    index_of = {name: order.index(layout.official_name(network, name, scale_keys)) for name in names}
    group = {"lr": lr, "betas": ADAM_BETAS, "eps": 1e-8, "weight_decay": 0, "amsgrad": False}
    if not state:
        return {"state": {}, "param_groups": [{**group, "params": list(range(len(names)))}]}
    groups = state.get("param_groups") or []
    if len(groups) != 1 or len(groups[0].get("params", [])) != len(names):
        raise FommError(f"{network} optimizer state does not cover the model's {len(names)} parameters")
    ours = groups[0]["params"]
    moved = {index_of[names[ours.index(i)]]: v for i, v in state.get("state", {}).items()}
    return {"state": dict(sorted(moved.items())),
            "param_groups": [{**{k: v for k, v in groups[0].items() if k != "params"},
                              "params": list(range(len(names)))}]}


def _official_epoch(state: Mapping) -> int:
    """The original's ``epoch`` (index of the last finished epoch); ours counts finished epochs."""
    imported = state.get("imported_from")
    if isinstance(imported, dict) and isinstance(imported.get("epoch"), int):
        return imported["epoch"]
    epoch = state.get("epoch")
    return max(int(epoch) - 1, 0) if isinstance(epoch, int) else 0


def official_config_for(state: Mapping, config: ModelConfig) -> dict[str, Any]:
    """The YAML to ship with an exported checkpoint.

    An imported checkpoint gets its original YAML back (with the model params regenerated,
    which equal the originals); a trained one gets its own training numbers.
    """
    from ..losses import LossConfig
    from ..training.config import TrainConfig

    imported = state.get("imported_from")
    if isinstance(imported, dict) and isinstance(imported.get("config"), dict):
        return {**imported["config"], "model_params": official_model_params(config)}
    losses = {**to_mapping(LossConfig()), **(state.get("loss_config") or {})}
    train = {**to_mapping(TrainConfig()), **(state.get("train_config") or {})}
    augment = train["augment"]
    jitter = {k: augment[k] for k in ("brightness", "contrast", "saturation", "hue")} if augment["jitter"] else None
    dataset = {"root_dir": "data/frames", "frame_shape": [train["frame_size"], train["frame_size"], config.num_channels],
               "id_sampling": bool(train["id_sampling"]),
               "augmentation_params": {"flip_param": {"horizontal_flip": augment["horizontal_flip"] > 0,
                                                      "time_flip": augment["time_flip"] > 0}}}
    if jitter:
        dataset["augmentation_params"]["jitter_param"] = jitter
    return {
        "dataset_params": dataset,
        "model_params": official_model_params(config),
        "train_params": official_train_params(losses, train),
        "reconstruction_params": {"num_videos": 1000, "format": ".mp4"},
        "animate_params": {"num_pairs": 50, "format": ".mp4",
                           "normalization_params": {"adapt_movement_scale": False, "use_relative_movement": True,
                                                    "use_relative_jacobian": True}},
        "visualizer_params": {"kp_size": 5, "draw_border": True, "colormap": "gist_rainbow"},
    }


def official_tensor_shapes(config: ModelConfig, scale_keys: dict[str, str] | None = None) -> dict[str, dict]:
    """network -> {original tensor name: shape} of the model ``config`` describes, in order.

    What an export writes and an import expects; built on the meta device (no memory, fast).
    """
    from ..models import build_models

    with torch.device("meta"):
        modules = dict(zip(layout.NETWORKS, build_models(config)))
    shapes = {}
    for network, module in modules.items():
        named = {layout.official_name(network, k, scale_keys): tuple(v.shape) for k, v in module.state_dict().items()}
        named.update({k: tuple(v.shape) for k, v in layout.official_only_buffers(network, config).items()})
        shapes[network] = {k: named[k] for k in layout.official_order(network, named)}
    return shapes


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike,
                      config_out: str | os.PathLike) -> list[str]:
    """Write ``checkpoint`` in the original layout to ``out`` and its YAML to ``config_out``.

    Returns the networks written. Refuses a model the original code would run differently.
    """
    from ..models import build_models

    checkpoint, out, config_out = Path(checkpoint), Path(out), Path(config_out)
    state = read_checkpoint(checkpoint)
    config = checkpoint_model_config(state, checkpoint)
    reasons = unexpressible_conventions(config)
    if reasons:
        raise FommError(f"{checkpoint}: the original code cannot run this model: {reasons[0]}")
    yaml_config = official_config_for(state, config)
    scale_keys = {layout.project_scale_key(float(s)): layout.official_scale_key(s)
                  for s in yaml_config["model_params"]["discriminator_params"]["scales"]}
    modules = dict(zip(layout.NETWORKS, build_models(config)))
    networks = [n for n in layout.NETWORKS if n in state]
    train_params = yaml_config.get("train_params") if isinstance(yaml_config.get("train_params"), dict) else {}
    optimizers = state.get("optimizers") if isinstance(state.get("optimizers"), dict) else {}
    official: dict[str, Any] = {}
    for name in networks:
        try:
            modules[name].load_state_dict(state[name])
        except RuntimeError as exc:
            raise FommError(f"{checkpoint}: {name} weights do not match its model_config "
                            f"({str(exc).splitlines()[0]})") from None
        official[name] = _official_state(name, modules[name], config, scale_keys)
    for name in networks:
        lr = train_params.get(f"lr_{name}", DEFAULT_LR)
        official[OPTIMIZER_KEYS[name]] = _official_optimizer(name, modules[name], optimizers.get(name), lr,
                                                             scale_keys)
    official["epoch"] = _official_epoch(state)
    official[EXPORT_MARK] = {"source": checkpoint.name, "fomm_sha256": weights_sha256(state, checkpoint)}
    with atomic_path(out) as tmp:
        torch.save(official, tmp)
    header = (f"{CONFIG_HEADER} from {checkpoint.name}: the original first-order-model code's config for "
              f"{out.name}.\n")
    write_text_atomic(config_out, header + yaml.safe_dump(yaml_config, sort_keys=False))
    return networks
