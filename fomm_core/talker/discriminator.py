"""Temporal discriminator: does this keypoint motion look real, at several time spans?

One small 1-D convolutional critic per window length (5, 10, 20, 40 frames at the
defaults, 0.2 to 1.6 s): its first convolution spans exactly one window, so it scores every
window of the sequence (a temporal PatchGAN). Input per frame: the velocity and the
displacement from the source keypoints, normalised by training statistics; speech is not
an input (synchrony is the syncers' job), realism of mouth and head motion is.
"""

from __future__ import annotations

import torch
from torch import nn

from .dataset import KeypointStats


class TemporalDiscriminator(nn.Module):
    def __init__(self, kp_dim: int, windows: list[int], hidden: int = 64):
        super().__init__()
        self.windows = list(windows)
        self.critics = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(2 * kp_dim, hidden, w, stride=max(1, w // 4)), nn.LeakyReLU(0.2),
                nn.Conv1d(hidden, hidden, 1), nn.LeakyReLU(0.2),
                nn.Conv1d(hidden, 1, 1),
            )
            for w in self.windows
        )
        self.register_buffer("motion_std", torch.ones(kp_dim))
        self.register_buffer("velocity_std", torch.ones(kp_dim))

    def set_stats(self, stats: KeypointStats) -> None:
        t = stats.tensors()
        self.motion_std.copy_(t["motion_std"])
        self.velocity_std.copy_(t["velocity_std"])

    def forward(self, source: torch.Tensor, keypoints: torch.Tensor) -> list[torch.Tensor]:
        """Scores per window length, each (B, windows that fit); lengths longer than the
        sequence are skipped. ``source`` (B, D), ``keypoints`` (B, T, D)."""
        full = torch.cat([source.unsqueeze(1), keypoints], dim=1)
        velocity = (full[:, 1:] - full[:, :-1]) / self.velocity_std
        displacement = (keypoints - source.unsqueeze(1)) / self.motion_std
        x = torch.cat([velocity, displacement], dim=-1).transpose(1, 2)
        return [critic(x).flatten(1) for w, critic in zip(self.windows, self.critics) if w <= x.shape[-1]]
