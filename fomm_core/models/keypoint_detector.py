"""Unsupervised keypoint detector: K heatmaps, their centres of mass and local 2x2 Jacobians.

Each keypoint is the expectation of the coordinate grid under a softmax heatmap, so it is
differentiable and always inside the image. The Jacobian (the local affine part of the
motion around the keypoint) is read from a second head, weighted by the same heatmap.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import AntiAliasResize, Hourglass, coordinate_grid

HEAD_KERNEL = 7


class KeypointDetector(nn.Module):
    """Image (B, C, H, W) -> dict(value (B,K,2), jacobian (B,K,2,2), heatmap (B,K,h,w))."""

    def __init__(
        self,
        num_kp: int = 10,
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        temperature: float = 0.1,
        estimate_jacobian: bool = True,
        scale_factor: float = 0.25,
        pad: int = 0,
    ):
        super().__init__()
        self.num_kp = num_kp
        self.temperature = temperature
        self.pad = pad
        self.down = AntiAliasResize(num_channels, scale_factor)
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_channels, num_kp, HEAD_KERNEL, padding=pad)
        self.jacobian = None
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_channels, 4 * num_kp, HEAD_KERNEL, padding=pad)
            # Start from pure translation: every Jacobian is the identity until trained.
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(num_kp))

    def heatmap_grid(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Coordinates of the head's output pixels in the *input* map's [-1, 1] frame.

        With pad < 3 the 7x7 head loses a border of ``3 - pad`` pixels; its pixel (0, 0)
        is input pixel (crop, crop), so we crop the input grid instead of stretching a new
        one over the smaller map (which would push keypoints outwards).
        """
        crop = (HEAD_KERNEL - 1) // 2 - self.pad
        grid = coordinate_grid(height, width, torch.float32, device)
        return grid[crop : height - crop, crop : width - crop]

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.down(image)
        features = self.predictor(x)
        logits = self.kp(features)
        batch, num_kp, h, w = logits.shape
        # Softmax in float32: at temperature 0.1, bf16 logits would flatten the heatmap.
        heatmap = F.softmax(logits.float().reshape(batch, num_kp, h * w) / self.temperature, dim=-1)
        heatmap = heatmap.view(batch, num_kp, h, w)
        grid = self.heatmap_grid(x.shape[2], x.shape[3], x.device)
        value = (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))
        out = {"value": value, "heatmap": heatmap}
        if self.jacobian is not None:
            jacobian_map = self.jacobian(features).reshape(batch, num_kp, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jacobian_map).sum(dim=(3, 4))
            out["jacobian"] = jacobian.view(batch, num_kp, 2, 2)
        return out
