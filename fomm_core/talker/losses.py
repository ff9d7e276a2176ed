"""The talker's losses: multi-scale sync, hinge GAN, and small L2 anchors.

* sync: minus the cosine similarity between the frozen syncers' keypoint and audio
  embeddings of aligned windows, averaged over windows and then over pyramid levels, so
  each time span (0.2 to 1.6 s) counts the same however many windows it has;
* hinge GAN: ``relu(1 - D(real)) + relu(1 + D(fake))`` for the discriminator,
  ``-D(fake)`` for the generator, averaged over window lengths;
* L2 on positions (over ``motion_std``) and velocities (over ``velocity_std``) to the
  ground truth: small weights, they keep the rollout near the data early in training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .syncer import Syncers


def sync_loss(syncers: Syncers, keypoints: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Multi-scale sync loss of keypoints (B, T, D) against log-mels (B, T * a, n_mels).

    The syncers should be frozen (``requires_grad_(False)``, eval mode); gradients reach
    the keypoints. Levels shorter than one window are left out; none fitting is an error.
    """
    levels = [sim.mean() for sim in syncers.aligned_similarity(keypoints, audio) if sim is not None]
    if not levels:
        raise ValueError(f"{keypoints.shape[1]} frames are shorter than one syncer window")
    return -torch.stack(levels).mean()


def discriminator_hinge_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def generator_hinge_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([-f.mean() for f in fake]).mean()


def position_l2(generated: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (((generated - target) / scale) ** 2).mean()


def velocity_l2(generated: torch.Tensor, target: torch.Tensor, source: torch.Tensor,
                scale: torch.Tensor) -> torch.Tensor:
    """L2 between frame-to-frame velocities (the first from the source) over ``scale``."""
    def velocity(seq: torch.Tensor) -> torch.Tensor:
        return torch.diff(torch.cat([source.unsqueeze(1), seq], dim=1), dim=1)
    return (((velocity(generated) - velocity(target)) / scale) ** 2).mean()
