"""Dense motion: combine K local affine motions and the background into one flow.

For every keypoint k the first-order approximation around it maps a driving-frame point z
to the source frame as ``kp_s + J_s J_d^-1 (z - kp_d)``; the background does not move.
An hourglass looks at where each keypoint moved (heatmap differences) and at the source
warped by each candidate motion, and predicts a softmax mask choosing, per pixel, which
motion applies, plus an occlusion map for regions the source cannot explain.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import AntiAliasResize, Hourglass, coordinate_grid, gaussian_heatmaps, warp_float


def inverse_2x2(m: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of (..., 2, 2) matrices, in the input dtype (no LAPACK, works in bf16)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    inv = torch.stack([d, -b, -c, a], dim=-1) / det.unsqueeze(-1)
    return inv.view(*m.shape)


def matmul_2x2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 2, 2) @ (..., 2, 2) with elementwise ops, so autocast never lowers its precision."""
    return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(dim=-2)


class DenseMotionNetwork(nn.Module):
    """(source image, kp_driving, kp_source) -> mask, sparse_deformed, deformation, occlusion_map.

    Keypoint arguments are the detector's dicts: ``value`` (B,K,2), optional ``jacobian``.
    """

    def __init__(
        self,
        block_expansion: int = 64,
        num_blocks: int = 5,
        max_features: int = 1024,
        num_kp: int = 10,
        num_channels: int = 3,
        estimate_occlusion_map: bool = True,
        scale_factor: float = 0.25,
        kp_variance: float = 0.01,
        estimate_jacobian: bool = True,
        downsample: str = "bilinear",
    ):
        super().__init__()
        self.num_kp = num_kp
        self.kp_variance = kp_variance
        self.estimate_jacobian = estimate_jacobian
        self.down = AntiAliasResize(num_channels, scale_factor, downsample)
        # Per motion (K keypoints + background): one heatmap channel + the warped source.
        in_features = (num_kp + 1) * (num_channels + 1)
        self.hourglass = Hourglass(block_expansion, in_features, num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_channels, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = None
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_channels, 1, kernel_size=7, padding=3)

    def heatmap_representation(self, kp_driving, kp_source, height: int, width: int) -> torch.Tensor:
        """(B, K+1, h, w): Gaussian(driving) - Gaussian(source), with a zero background map first."""
        heatmap = gaussian_heatmaps(kp_driving["value"], height, width, self.kp_variance) - gaussian_heatmaps(
            kp_source["value"], height, width, self.kp_variance
        )
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, height, width)
        return torch.cat([zeros, heatmap], dim=1)

    def sparse_motions(self, kp_driving, kp_source, height: int, width: int) -> torch.Tensor:
        """(B, K+1, h, w, 2) sampling grids: identity (background), then one per keypoint."""
        kp_d = kp_driving["value"].float()
        kp_s = kp_source["value"].float()
        batch = kp_d.shape[0]
        identity = coordinate_grid(height, width, torch.float32, kp_d.device)
        offset = identity.view(1, 1, height, width, 2) - kp_d.view(batch, self.num_kp, 1, 1, 2)
        if self.estimate_jacobian and "jacobian" in kp_driving and "jacobian" in kp_source:
            affine = matmul_2x2(kp_source["jacobian"].float(), inverse_2x2(kp_driving["jacobian"].float()))
            offset = (affine.view(batch, self.num_kp, 1, 1, 2, 2) * offset.unsqueeze(-2)).sum(-1)
        driving_to_source = offset + kp_s.view(batch, self.num_kp, 1, 1, 2)
        background = identity.expand(batch, 1, height, width, 2)
        return torch.cat([background, driving_to_source], dim=1)

    def deform_source(self, source: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
        """(B, K+1, C, h, w): the source warped by each candidate motion."""
        batch, num_motions, h, w, _ = motions.shape
        repeated = source.unsqueeze(1).expand(batch, num_motions, *source.shape[1:])
        repeated = repeated.reshape(batch * num_motions, *source.shape[1:])
        deformed = warp_float(repeated, motions.reshape(batch * num_motions, h, w, 2))
        return deformed.reshape(batch, num_motions, *source.shape[1:])

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, torch.Tensor]:
        return self.motion_from_downscaled(self.down(source_image), kp_driving, kp_source)

    def motion_from_downscaled(self, source, kp_driving, kp_source) -> dict[str, torch.Tensor]:
        """:meth:`forward` after the downscale, so animation can downscale the source once."""
        batch, _, h, w = source.shape
        heatmaps = self.heatmap_representation(kp_driving, kp_source, h, w)
        motions = self.sparse_motions(kp_driving, kp_source, h, w)
        deformed = self.deform_source(source, motions)
        net_input = torch.cat([heatmaps.unsqueeze(2).to(deformed.dtype), deformed], dim=2)
        features = self.hourglass(net_input.reshape(batch, -1, h, w))

        mask = F.softmax(self.mask(features).float(), dim=1)
        deformation = (mask.unsqueeze(-1) * motions).sum(dim=1)
        out = {"mask": mask, "sparse_deformed": deformed, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features).float())
        return out
