"""FOMM-style augmentation of a frame pair, the same transform applied to both frames.

Horizontal flip, time flip (source and driving swapped) and colour jitter with random
brightness, contrast, saturation and hue factors applied in random order, as FOMM's
``AllAugmentationTransform`` does to a whole video. Hue is rotated in YIQ space (an exact
rotation of the chroma plane, close to an HSV hue shift for small angles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

_GRAY = torch.tensor([0.299, 0.587, 0.114])
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


@dataclass
class AugmentConfig:
    """Probabilities and strengths; the defaults are FOMM's vox config."""

    horizontal_flip: float = 0.5  # probability
    time_flip: float = 0.5  # probability of swapping source and driving
    jitter: float = 1.0  # probability of colour jitter
    brightness: float = 0.1  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.1  # shift drawn from [-h, h] turns (0.5 = half the colour wheel)

    def validate(self) -> None:
        for name in ("horizontal_flip", "time_flip", "jitter"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in 0..1, got {value}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in 0..1, got {value}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in 0..0.5, got {self.hue}")

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(horizontal_flip=0.0, time_flip=0.0, jitter=0.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma of (N, 3, H, W) RGB."""
    return torch.einsum("nchw,c->nhw", x, _GRAY.to(x)).unsqueeze(1)


def adjust_brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (x * factor).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return (mean + factor * (x - mean)).clamp_(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    gray = _gray(x)
    return (gray + factor * (x - gray)).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate chroma by ``shift`` turns."""
    a = 2.0 * math.pi * shift
    rot = torch.tensor([[1.0, 0.0, 0.0],
                        [0.0, math.cos(a), -math.sin(a)],
                        [0.0, math.sin(a), math.cos(a)]])
    matrix = (_YIQ_TO_RGB @ rot @ _RGB_TO_YIQ).to(x)
    return torch.einsum("dc,nchw->ndhw", matrix, x).clamp_(0.0, 1.0)


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    """Same random factors for every image in the (N, 3, H, W) batch, ops in random order."""
    ops = []
    if cfg.brightness > 0:
        f = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
        ops.append(lambda t, f=f: adjust_brightness(t, f))
    if cfg.contrast > 0:
        f = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
        ops.append(lambda t, f=f: adjust_contrast(t, f))
    if cfg.saturation > 0:
        f = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
        ops.append(lambda t, f=f: adjust_saturation(t, f))
    if cfg.hue > 0:
        f = rng.uniform(-cfg.hue, cfg.hue)
        ops.append(lambda t, f=f: adjust_hue(t, f))
    for k in rng.permutation(len(ops)):
        x = ops[k](x)
    return x


def augment_pair(source: torch.Tensor, driving: torch.Tensor, cfg: AugmentConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(source, driving, swapped)`` after the pair-wide transform; inputs (3, H, W) in [0, 1].

    The random draws always happen in the same order whatever is enabled, so changing one
    probability does not reshuffle the others.
    """
    swap = rng.random() < cfg.time_flip
    flip = rng.random() < cfg.horizontal_flip
    jitter = rng.random() < cfg.jitter
    if swap:
        source, driving = driving, source
    if not (flip or jitter):
        return source, driving, swap
    pair = torch.stack([source, driving])
    if flip:
        pair = torch.flip(pair, dims=[3])
    if jitter:
        pair = colour_jitter(pair, cfg, rng)
    return pair[0], pair[1], swap
