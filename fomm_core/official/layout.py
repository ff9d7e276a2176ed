"""Tensor names of the original FOMM checkpoints and how they map onto this project's modules.

Facts about the original layout (Siarohin et al.'s code, torch 1.0 state dicts):

* the hourglass keeps its down and up blocks under ``encoder.down_blocks.N`` and
  ``decoder.up_blocks.N`` (ours: ``down_blocks.N`` / ``up_blocks.N`` directly);
* the generator's motion network is ``dense_motion_network`` (ours ``dense_motion``) and its
  residual bottleneck blocks are named ``bottleneck.r0 .. rN`` (ours: ``bottleneck.0 ..``);
* an anti-aliased downscale saves its 2-D Gaussian kernel as the buffer ``down.weight``,
  shape (C, 1, k, k) (ours derives the kernel from the config and saves nothing);
* the discriminators live in ``discs.<scale>`` with ``<scale>`` the YAML value written by
  ``str`` with '.' -> '-' (``[1]`` gives ``discs.1``), blocks in ``down_blocks.N``, and
  spectral norm is the old hook API: ``weight_orig``, ``weight_u``, ``weight_v`` (ours: the
  parametrization's ``parametrizations.weight.original`` / ``.0._u`` / ``.0._v``, same
  shapes and meaning).

Every other name (``kp``, ``jacobian``, ``first``, ``final``, ``mask``, ``occlusion``, the
BatchNorm statistics...) is the same on both sides.
"""

from __future__ import annotations

import re
from typing import Iterable

import torch

from ..model_config import ModelConfig
from ..models.blocks import gaussian_kernel_1d
from ..models.discriminator import scale_key

NETWORKS = ("kp_detector", "generator", "discriminator")

# (pattern on our name, replacement giving the original name), applied in order, first match
# of each pattern only; all anchored so they never touch a name twice.
_SHARED_RULES = [
    (r"(^|\.)hourglass\.down_blocks\.", r"\1hourglass.encoder.down_blocks."),
    (r"(^|\.)hourglass\.up_blocks\.", r"\1hourglass.decoder.up_blocks."),
    (r"\.parametrizations\.weight\.original$", ".weight_orig"),
    (r"\.parametrizations\.weight\.0\._u$", ".weight_u"),
    (r"\.parametrizations\.weight\.0\._v$", ".weight_v"),
]
_NETWORK_RULES = {
    "kp_detector": [
        (r"^predictor\.down_blocks\.", "predictor.encoder.down_blocks."),
        (r"^predictor\.up_blocks\.", "predictor.decoder.up_blocks."),
    ],
    "generator": [
        (r"^dense_motion\.", "dense_motion_network."),
        (r"^bottleneck\.(\d+)\.", r"bottleneck.r\1."),
    ],
    "discriminator": [
        (r"^discriminators\.([^.]+)\.blocks\.", r"discs.\1.down_blocks."),
        (r"^discriminators\.([^.]+)\.conv\.", r"discs.\1.conv."),
    ],
}

# The original generator registers its sub-modules in this order (ours puts the bottleneck
# before the up blocks), and its residual blocks their convolutions before their norms (ours
# interleave them); parameter order matters for optimizer states, which are by index.
_GENERATOR_ORDER = ("dense_motion_network", "first", "down_blocks", "up_blocks", "bottleneck", "final")
_RESBLOCK_ORDER = ("conv1", "conv2", "norm1", "norm2")


def official_scale_key(value: float | int) -> str:
    """``discs`` key of one discriminator scale as the YAML spells it: 1 -> '1', 0.5 -> '0-5'."""
    return str(value).replace(".", "-")


def official_name(network: str, name: str, scale_keys: dict[str, str] | None = None) -> str:
    """The original code's name of our tensor ``name`` in ``network``.

    ``scale_keys`` maps our discriminator keys ('1', '0-5') to the original's when the YAML
    spells a scale differently ('1.0' gives '1-0').
    """
    for pattern, replacement in _NETWORK_RULES[network] + _SHARED_RULES:
        name = re.sub(pattern, replacement, name, count=1)
    if network == "discriminator" and scale_keys:
        match = re.match(r"^discs\.([^.]+)\.", name)
        if match and match.group(1) in scale_keys:
            name = f"discs.{scale_keys[match.group(1)]}." + name[match.end():]
    return name


def project_scale_key(scale: float) -> str:
    """Our ModuleDict key of a discriminator scale (see MultiScaleDiscriminator)."""
    return scale_key(scale).replace(".", "-")


def anti_alias_kernel(scale: float, channels: int) -> torch.Tensor:
    """The original ``down.weight`` buffer: normalised 2-D Gaussian, (C, 1, k, k) float32."""
    k = gaussian_kernel_1d(scale)
    kernel = torch.outer(k, k)
    kernel = kernel / kernel.sum()
    return kernel.view(1, 1, *kernel.shape).repeat(channels, 1, 1, 1)


def official_only_buffers(network: str, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Buffers the original saves that we derive from the config: the anti-alias kernels."""
    if network == "kp_detector" and config.kp.scale_factor != 1:
        return {"down.weight": anti_alias_kernel(config.kp.scale_factor, config.num_channels)}
    if network == "generator" and config.generator.dense_motion.scale_factor != 1:
        return {"dense_motion_network.down.weight": anti_alias_kernel(config.generator.dense_motion.scale_factor,
                                                                      config.num_channels)}
    return {}


def official_order(network: str, names: Iterable[str]) -> list[str]:
    """Original names in the order the original module registers them."""
    names = list(names)
    if network != "generator":
        return names

    def rank(name: str) -> tuple[int, int, int]:
        parts = name.split(".")
        top = _GENERATOR_ORDER.index(parts[0]) if parts[0] in _GENERATOR_ORDER else len(_GENERATOR_ORDER)
        block = re.fullmatch(r"r(\d+)", parts[1]) if parts[0] == "bottleneck" and len(parts) > 2 else None
        if block is None:
            return top, 0, 0
        child = _RESBLOCK_ORDER.index(parts[2]) if parts[2] in _RESBLOCK_ORDER else len(_RESBLOCK_ORDER)
        return top, int(block.group(1)), child

    return sorted(names, key=rank)  # stable: the order inside each sub-module is kept
