"""Coordinate grids and Gaussian keypoint heatmaps shared by the models and the losses.

Convention everywhere: normalised coordinates in [-1, 1] where -1 and 1 are the *centres*
of the first and last pixels, i.e. ``grid_sample(..., align_corners=True)``. Mixing in the
default ``align_corners=False`` would shift every warp by half a pixel per level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_coordinate_grid(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(H, W, 2) grid of (x, y) coordinates in [-1, 1], x varying along the width."""
    ys = torch.linspace(-1.0, 1.0, height, dtype=dtype, device=device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=dtype, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def keypoints_to_gaussian(keypoints: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """(B, K, 2) keypoints to (B, K, H, W) unnormalised Gaussian heatmaps."""
    grid = make_coordinate_grid(height, width, keypoints.dtype, keypoints.device)
    diff = grid.view(1, 1, height, width, 2) - keypoints.view(*keypoints.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def warp(image: torch.Tensor, sampling_grid: torch.Tensor, resize_align_corners: bool = True) -> torch.Tensor:
    """Backward warp: output(p) = image(sampling_grid(p)), grid (B, H, W, 2) in [-1, 1].

    A grid of another size is first resized bilinearly to the image's, with
    ``resize_align_corners`` (False reproduces the original FOMM code; see GeneratorConfig).
    """
    if sampling_grid.shape[1:3] != image.shape[2:]:
        sampling_grid = F.interpolate(
            sampling_grid.permute(0, 3, 1, 2), size=image.shape[2:], mode="bilinear",
            align_corners=resize_align_corners,
        ).permute(0, 2, 3, 1)
    return F.grid_sample(image, sampling_grid, mode="bilinear", padding_mode="zeros", align_corners=True)
