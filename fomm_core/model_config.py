"""Typed settings for the First Order Motion Model networks, with two profiles.

The defaults are the layer sizes of the paper's ``vox-256`` model (Siarohin et al., NeurIPS
2019) with this project's coordinate conventions (see ``downsample``, ``kp.heatmap_grid``,
``generator.flow_resize_align_corners``). The published models themselves, conventions
included, are what :mod:`fomm_core.official` builds from their YAML files (and the
``fomm profile`` settings). :func:`small_model_config` is a much cheaper variant for CPU
training on the embedded synthetic data set. Both load from plain mappings
through :func:`fomm_core.config.from_mapping`; ``validate`` rejects values that would only
fail later inside a convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _check_scale(name: str, value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")


@dataclass
class KeypointDetectorConfig:
    """Hourglass that predicts one heatmap (and one 2x2 Jacobian) per keypoint."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    pad: int = 0  # padding of the 7x7 heads; 0 (the paper's) gives a map 6 px smaller
    # One 2x2 Jacobian map shared by all keypoints (the original mgif-256 model) instead of one each.
    single_jacobian_map: bool = False
    # Coordinates of the (smaller, unpadded) heatmap's pixels: "cropped" keeps each pixel at its
    # input-map coordinate (this project); "fresh" stretches a new [-1, 1] grid over the heatmap,
    # as the original code does and its published weights were trained with.
    heatmap_grid: Literal["cropped", "fresh"] = "cropped"

    def validate(self) -> None:
        _check_positive(
            block_expansion=self.block_expansion, max_features=self.max_features,
            num_blocks=self.num_blocks, temperature=self.temperature,
        )
        _check_scale("scale_factor", self.scale_factor)
        if not 0 <= self.pad <= 3:
            raise ValueError(f"pad must be between 0 and 3 (7x7 heads), got {self.pad}")


@dataclass
class DenseMotionConfig:
    """Hourglass that mixes the per-keypoint motions into one dense flow and an occlusion map."""

    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01

    def validate(self) -> None:
        _check_positive(
            block_expansion=self.block_expansion, max_features=self.max_features,
            num_blocks=self.num_blocks, kp_variance=self.kp_variance,
        )
        _check_scale("scale_factor", self.scale_factor)


@dataclass
class GeneratorConfig:
    """Encoder, warp of the encoded source, residual bottleneck, decoder."""

    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    # When the dense-motion map and the encoded features differ in size, the flow and occlusion
    # are resized bilinearly with align_corners=True (this project's convention) or False (what
    # the original code does; only matters when num_down_blocks != log2(1 / scale_factor)).
    flow_resize_align_corners: bool = True

    def validate(self) -> None:
        _check_positive(
            block_expansion=self.block_expansion, max_features=self.max_features,
            num_bottleneck_blocks=self.num_bottleneck_blocks,
        )
        if self.num_down_blocks < 0:
            raise ValueError(f"num_down_blocks must be >= 0, got {self.num_down_blocks}")


@dataclass
class DiscriminatorConfig:
    """Patch discriminator(s), one per image scale, optionally seeing the keypoint heatmaps."""

    scales: list[float] = field(default_factory=lambda: [1.0])
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = True
    use_kp: bool = True
    kp_variance: float = 0.01

    def validate(self) -> None:
        _check_positive(
            block_expansion=self.block_expansion, max_features=self.max_features,
            num_blocks=self.num_blocks, kp_variance=self.kp_variance,
        )
        if not self.scales:
            raise ValueError("scales must list at least one scale, e.g. [1]")
        for scale in self.scales:
            _check_scale("every scale", scale)
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must be distinct, got {self.scales}")


@dataclass
class ModelConfig:
    """The whole model; ``num_kp``, ``num_channels`` and ``estimate_jacobian`` are shared.

    ``downsample`` is how every anti-aliased downscale (detector, dense motion, discriminator
    scales) samples the blurred image: "bilinear" resizes with align_corners=True, so pixel
    centres keep their [-1, 1] coordinates across scales (this project); "strided" keeps
    every (1/scale)-th pixel, as the original code does and its published weights expect.
    """

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    downsample: Literal["bilinear", "strided"] = "bilinear"
    kp: KeypointDetectorConfig = field(default_factory=KeypointDetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def validate(self) -> None:
        _check_positive(num_kp=self.num_kp, num_channels=self.num_channels)


def vox256_model_config() -> ModelConfig:
    """The paper's vox-256 layer sizes (the dataclass defaults), named for readability."""
    return ModelConfig()


def small_model_config() -> ModelConfig:
    """A narrow, shallow model for CPU training on 128 px synthetic faces.

    Same structure and keypoint count as vox-256 with fewer channels and levels, so code
    and losses are exercised identically; a training step at batch 4, 128 px is well under
    a second on two CPU cores.
    """
    return ModelConfig(
        num_kp=10,
        kp=KeypointDetectorConfig(block_expansion=16, max_features=256, num_blocks=4, scale_factor=0.25),
        generator=GeneratorConfig(
            block_expansion=32, max_features=256, num_down_blocks=2, num_bottleneck_blocks=3,
            dense_motion=DenseMotionConfig(block_expansion=32, max_features=256, num_blocks=4, scale_factor=0.25),
        ),
        discriminator=DiscriminatorConfig(block_expansion=16, max_features=256, num_blocks=4),
    )
