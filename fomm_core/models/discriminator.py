"""Patch discriminators (pix2pix style), one per image scale.

Each returns its intermediate feature maps too: the generator's feature-matching loss
compares them between real and generated frames. Giving the discriminator the keypoint
heatmaps lets it judge whether the face matches the pose it should have.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .blocks import AntiAliasResize, gaussian_heatmaps


def _maybe_sn(module: nn.Module, sn: bool) -> nn.Module:
    return spectral_norm(module) if sn else module


class DiscriminatorBlock(nn.Module):
    """Conv 4x4 (valid), optional InstanceNorm, LeakyReLU(0.2), optional 2x average pooling."""

    def __init__(self, in_features: int, out_features: int, norm: bool, pool: bool, sn: bool):
        super().__init__()
        self.conv = _maybe_sn(nn.Conv2d(in_features, out_features, kernel_size=4), sn)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        if self.pool:
            out = F.avg_pool2d(out, 2)
        return out


class Discriminator(nn.Module):
    """forward(image, kp=None) -> (feature maps, one per block; patch prediction map)."""

    def __init__(
        self,
        num_channels: int = 3,
        block_expansion: int = 32,
        num_blocks: int = 4,
        max_features: int = 512,
        sn: bool = True,
        use_kp: bool = True,
        num_kp: int = 10,
        kp_variance: float = 0.01,
    ):
        super().__init__()
        self.use_kp = use_kp
        self.kp_variance = kp_variance
        blocks = []
        for i in range(num_blocks):
            in_features = num_channels + num_kp * use_kp if i == 0 else min(max_features, block_expansion * 2**i)
            out_features = min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(DiscriminatorBlock(in_features, out_features, norm=i != 0, pool=i != num_blocks - 1, sn=sn))
        self.blocks = nn.ModuleList(blocks)
        self.conv = _maybe_sn(nn.Conv2d(out_features, 1, kernel_size=1), sn)

    def forward(self, image: torch.Tensor, kp: dict | None = None):
        out = image
        if self.use_kp:
            if kp is None:
                raise ValueError("this discriminator was built with use_kp=True; pass the keypoints")
            heatmaps = gaussian_heatmaps(kp["value"], image.shape[2], image.shape[3], self.kp_variance)
            out = torch.cat([out, heatmaps.to(out.dtype)], dim=1)
        feature_maps = []
        for block in self.blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


def scale_key(scale: float) -> str:
    """'1' for 1.0, '0.5' for 0.5: the suffix of the output keys."""
    return f"{scale:g}"


class MultiScaleDiscriminator(nn.Module):
    """forward(image, kp=None) -> {'feature_maps_<s>': [...], 'prediction_map_<s>': map} per scale.

    Scales below 1 see the image through :class:`AntiAliasResize`; keypoints are in
    normalised coordinates, so the same ones serve every scale.
    """

    def __init__(
        self,
        scales=(1.0,),
        block_expansion: int = 32,
        max_features: int = 512,
        num_blocks: int = 4,
        sn: bool = True,
        use_kp: bool = True,
        kp_variance: float = 0.01,
        num_channels: int = 3,
        num_kp: int = 10,
        downsample: str = "bilinear",
    ):
        super().__init__()
        self.scales = [float(s) for s in scales]
        # ModuleDict keys may not contain '.', hence '0-5' for scale 0.5.
        self.resizers = nn.ModuleDict()
        self.discriminators = nn.ModuleDict()
        for scale in self.scales:
            name = scale_key(scale).replace(".", "-")
            self.resizers[name] = AntiAliasResize(num_channels, scale, downsample)
            self.discriminators[name] = Discriminator(
                num_channels=num_channels, block_expansion=block_expansion, num_blocks=num_blocks,
                max_features=max_features, sn=sn, use_kp=use_kp, num_kp=num_kp, kp_variance=kp_variance,
            )

    def forward(self, image: torch.Tensor, kp: dict | None = None) -> dict:
        out = {}
        for scale in self.scales:
            name = scale_key(scale).replace(".", "-")
            feature_maps, prediction = self.discriminators[name](self.resizers[name](image), kp)
            out[f"feature_maps_{scale_key(scale)}"] = feature_maps
            out[f"prediction_map_{scale_key(scale)}"] = prediction
        return out
