"""The two training objectives as modules, so DDP sees one forward per optimisation step.

``GeneratorFullModel`` owns the keypoint detector and generator (the parameters trained
together) and the frozen perceptual loss. The detector runs once on ``cat(source, driving)``
and once on the randomly warped driving frame (equivariance), never three times. The
discriminator is *not* a submodule: the generator step only reads it (its parameters are
frozen then), and ``DiscriminatorFullModel`` trains it on detached inputs.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..losses import (
    LossConfig, PerceptualPyramidLoss, RandomTransform, discriminator_gan_loss, equivariance_losses,
    feature_matching_loss, generator_gan_loss,
)

KP_KEYS = ("value", "jacobian")


def split_keypoints(kp: Mapping[str, torch.Tensor], batch: int) -> tuple[dict, dict]:
    """Keypoints of a ``cat([a, b])`` batch back into those of ``a`` and of ``b``."""
    first = {k: v[:batch] for k, v in kp.items() if k in KP_KEYS}
    second = {k: v[batch:] for k, v in kp.items() if k in KP_KEYS}
    return first, second


def detach_keypoints(kp: Mapping[str, torch.Tensor]) -> dict:
    """What the discriminator sees: keypoint positions without a path back to the detector."""
    return {k: v.detach() for k, v in kp.items() if k in KP_KEYS}


class GeneratorFullModel(nn.Module):
    """forward(source, driving, transform, discriminator=None) -> (weighted losses, outputs).

    ``outputs`` holds the generator's dict (``prediction``, ``occlusion_map``...) plus
    ``kp_source`` and ``kp_driving``; the losses dict has one entry per non-zero term.
    """

    def __init__(self, kp_detector: nn.Module, generator: nn.Module,
                 perceptual: PerceptualPyramidLoss | None, config: LossConfig):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.perceptual = perceptual
        self.config = config

    def forward(self, source: torch.Tensor, driving: torch.Tensor, transform: RandomTransform | None = None,
                discriminator: nn.Module | None = None):
        cfg = self.config
        batch = source.shape[0]
        kp_source, kp_driving = split_keypoints(self.kp_detector(torch.cat([source, driving])), batch)
        out = dict(self.generator(source, kp_driving=kp_driving, kp_source=kp_source))
        out["kp_source"], out["kp_driving"] = kp_source, kp_driving
        prediction = out["prediction"]

        losses: dict[str, torch.Tensor] = {}
        if self.perceptual is not None and any(cfg.perceptual):
            losses["perceptual"] = self.perceptual(prediction, driving)
        if transform is not None and (cfg.equivariance_value or cfg.equivariance_jacobian):
            kp_transformed = self.kp_detector(transform.transform_frame(driving))
            losses.update(equivariance_losses(
                kp_driving, kp_transformed, transform, weights=(cfg.equivariance_value, cfg.equivariance_jacobian)))
        if discriminator is not None and cfg.generator_gan != 0:
            kp = detach_keypoints(kp_driving)
            fake = discriminator(prediction, kp=kp)
            losses["generator_gan"] = generator_gan_loss(fake, cfg.generator_gan)
            if any(cfg.feature_matching):
                with torch.no_grad():  # feature matching treats the real side as a constant
                    real = discriminator(driving, kp=kp)
                losses["feature_matching"] = feature_matching_loss(real, fake, cfg.feature_matching)
        return losses, out


class DiscriminatorFullModel(nn.Module):
    """forward(prediction, driving, kp_driving) -> {'discriminator_gan': loss}, all inputs detached."""

    def __init__(self, discriminator: nn.Module, config: LossConfig):
        super().__init__()
        self.discriminator = discriminator
        self.config = config

    def forward(self, prediction: torch.Tensor, driving: torch.Tensor, kp_driving: Mapping[str, torch.Tensor]):
        kp = detach_keypoints(kp_driving)
        real = self.discriminator(driving, kp=kp)
        fake = self.discriminator(prediction.detach(), kp=kp)
        return {"discriminator_gan": discriminator_gan_loss(real, fake, self.config.discriminator_gan)}
