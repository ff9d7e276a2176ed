"""Loss weights and settings (the ``losses`` section of params.yaml), FOMM's vox-256 defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .vgg import LAYER_NAMES


@dataclass
class LossConfig:
    """Weights of each FOMM loss term and the perceptual backbone to use.

    ``generator_gan: 0`` is the paper's vox-256 setting (no adversarial term, the discriminator
    is not needed); ``1`` is vox-adv-256. ``perceptual_backbone: random`` allows offline runs
    without ImageNet VGG weights (a seeded random VGG; weaker, and logged as such).
    """

    perceptual: list[float] = field(default_factory=lambda: [10.0, 10.0, 10.0, 10.0, 10.0])
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0
    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: list[float] = field(default_factory=lambda: [10.0, 10.0, 10.0, 10.0])
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5
    perceptual_backbone: Literal["pretrained", "random"] = "pretrained"
    vgg_weights: str = ""
    vgg_weights_sha256: str = ""
    allow_download: bool = True
    random_backbone_seed: int = 0

    def validate(self) -> None:
        if len(self.perceptual) != len(LAYER_NAMES):
            raise ValueError(
                f"perceptual: need {len(LAYER_NAMES)} weights ({', '.join(LAYER_NAMES)}), got {len(self.perceptual)}"
            )
        for name in ("perceptual", "feature_matching"):
            if any(w < 0 for w in getattr(self, name)):
                raise ValueError(f"{name}: weights must be >= 0, got {getattr(self, name)}")
        for name in ("equivariance_value", "equivariance_jacobian", "generator_gan", "discriminator_gan",
                     "sigma_affine", "sigma_tps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ValueError(f"scales: need one or more scales in (0, 1], got {self.scales}")
        if self.points_tps < 2:
            raise ValueError(f"points_tps: need a grid of at least 2x2 control points, got {self.points_tps}")
        if self.vgg_weights_sha256 and not re.fullmatch(r"[0-9a-fA-F]{1,64}", self.vgg_weights_sha256):
            raise ValueError(f"vgg_weights_sha256: expected hex digits, got {self.vgg_weights_sha256!r}")
