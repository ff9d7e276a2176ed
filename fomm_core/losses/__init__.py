"""FOMM training losses: perceptual pyramid (VGG-19), equivariance, LSGAN + feature matching."""

from __future__ import annotations

import torch

from ..weights import VggWeights, load_vgg19_state_dict
from .config import LossConfig
from .equivariance import RandomTransform, equivariance_losses
from .gan import discriminator_gan_loss, feature_matching_loss, generator_gan_loss
from .perceptual import AntiAliasDownsample, ImagePyramid, PerceptualPyramidLoss
from .vgg import LAYER_NAMES, Vgg19Features, check_vgg19_state_dict


def build_perceptual_loss(
    config: LossConfig, device: torch.device | str | None = None
) -> tuple[PerceptualPyramidLoss, VggWeights]:
    """The perceptual loss as configured, and how its VGG was obtained (log ``.log_params()``)."""
    weights = load_vgg19_state_dict(
        config.vgg_weights or None,
        allow_download=config.allow_download,
        backbone=config.perceptual_backbone,
        expected_sha256=config.vgg_weights_sha256 or None,
    )
    vgg = Vgg19Features(weights.state_dict, seed=config.random_backbone_seed)
    loss = PerceptualPyramidLoss(vgg, scales=config.scales, layer_weights=config.perceptual).to(device)
    # The loss holds the module; drop the dict so the CPU copy of the weights can be freed.
    return loss, VggWeights(None, weights.backbone, weights.source, weights.path, weights.sha256, weights.note)


def random_transform(config: LossConfig, batch_size: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> RandomTransform:
    """A :class:`RandomTransform` with the configured sigmas."""
    return RandomTransform(
        batch_size, sigma_affine=config.sigma_affine, sigma_tps=config.sigma_tps,
        points_tps=config.points_tps, generator=generator, device=device,
    )


__all__ = [
    "AntiAliasDownsample",
    "ImagePyramid",
    "LAYER_NAMES",
    "LossConfig",
    "PerceptualPyramidLoss",
    "RandomTransform",
    "Vgg19Features",
    "VggWeights",
    "build_perceptual_loss",
    "check_vgg19_state_dict",
    "discriminator_gan_loss",
    "equivariance_losses",
    "feature_matching_loss",
    "generator_gan_loss",
    "random_transform",
]
