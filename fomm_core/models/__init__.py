"""The First Order Motion Model networks (Siarohin et al., NeurIPS 2019), in plain torch.

``build_models(ModelConfig())`` gives the paper's vox-256 keypoint detector, generator and
discriminator; ``build_models(small_model_config())`` a fast CPU variant.
"""

from __future__ import annotations

import torch.nn as nn

from ..model_config import ModelConfig
from .blocks import AntiAliasResize, Hourglass
from .dense_motion import DenseMotionNetwork
from .discriminator import Discriminator, MultiScaleDiscriminator
from .generator import OcclusionAwareGenerator
from .keypoint_detector import KeypointDetector

__all__ = [
    "AntiAliasResize",
    "DenseMotionNetwork",
    "Discriminator",
    "Hourglass",
    "KeypointDetector",
    "MultiScaleDiscriminator",
    "OcclusionAwareGenerator",
    "build_models",
    "count_parameters",
]


def build_models(cfg: ModelConfig) -> tuple[KeypointDetector, OcclusionAwareGenerator, MultiScaleDiscriminator]:
    """(kp_detector, generator, discriminator) for ``cfg``, freshly initialised."""
    kp = cfg.kp
    kp_detector = KeypointDetector(
        num_kp=cfg.num_kp, num_channels=cfg.num_channels, block_expansion=kp.block_expansion,
        max_features=kp.max_features, num_blocks=kp.num_blocks, temperature=kp.temperature,
        estimate_jacobian=cfg.estimate_jacobian, scale_factor=kp.scale_factor, pad=kp.pad,
        single_jacobian_map=kp.single_jacobian_map, heatmap_grid=kp.heatmap_grid, downsample=cfg.downsample,
    )
    gen = cfg.generator
    generator = OcclusionAwareGenerator(
        num_channels=cfg.num_channels, num_kp=cfg.num_kp, block_expansion=gen.block_expansion,
        max_features=gen.max_features, num_down_blocks=gen.num_down_blocks,
        num_bottleneck_blocks=gen.num_bottleneck_blocks, estimate_occlusion_map=gen.estimate_occlusion_map,
        dense_motion=gen.dense_motion, estimate_jacobian=cfg.estimate_jacobian,
        flow_resize_align_corners=gen.flow_resize_align_corners, downsample=cfg.downsample,
    )
    disc = cfg.discriminator
    discriminator = MultiScaleDiscriminator(
        scales=disc.scales, block_expansion=disc.block_expansion, max_features=disc.max_features,
        num_blocks=disc.num_blocks, sn=disc.sn, use_kp=disc.use_kp, kp_variance=disc.kp_variance,
        num_channels=cfg.num_channels, num_kp=cfg.num_kp, downsample=cfg.downsample,
    )
    return kp_detector, generator, discriminator


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
