"""Unsupervised keypoint detector: K heatmaps, their centres of mass and local 2x2 Jacobians.

Each keypoint is the expectation of the coordinate grid under a softmax heatmap, so it is
differentiable and always inside the image. The Jacobian (the local affine part of the
motion around the keypoint) is read from a second head, weighted by the same heatmap: one
4-channel map per keypoint, or one shared by all (``single_jacobian_map``, mgif-256).
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
        single_jacobian_map: bool = False,
        heatmap_grid: str = "cropped",
        downsample: str = "bilinear",
    ):
        super().__init__()
        if heatmap_grid not in ("cropped", "fresh"):
            raise ValueError(f"heatmap_grid must be 'cropped' or 'fresh', got {heatmap_grid!r}")
        self.num_kp = num_kp
        self.temperature = temperature
        self.pad = pad
        self.grid_mode = heatmap_grid
        self.down = AntiAliasResize(num_channels, scale_factor, downsample)
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_channels, num_kp, HEAD_KERNEL, padding=pad)
        self.jacobian = None
        self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_channels, 4 * self.num_jacobian_maps, HEAD_KERNEL, padding=pad)
            # Start from pure translation: every Jacobian is the identity until trained.
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(self.num_jacobian_maps))

    def heatmap_grid(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Coordinates of the head's output pixels, for an input map of ``height x width``.

        With pad < 3 the 7x7 head loses a border of ``3 - pad`` pixels; its pixel (0, 0)
        is input pixel (crop, crop), so by default we crop the input grid instead of
        stretching a new one over the smaller map (which pushes keypoints outwards by
        up to 3 / 29 of the half-width at 64 px). ``heatmap_grid="fresh"`` stretches it
        anyway, for weights trained that way (the published checkpoints).
        """
        crop = (HEAD_KERNEL - 1) // 2 - self.pad
        if self.grid_mode == "fresh":
            return coordinate_grid(height - 2 * crop, width - 2 * crop, torch.float32, device)
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
            # (B, K or 1, 4, h, w): a single shared map broadcasts over the K heatmaps.
            jacobian_map = self.jacobian(features).reshape(batch, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jacobian_map).sum(dim=(3, 4))
            out["jacobian"] = jacobian.view(batch, num_kp, 2, 2)
        return out
