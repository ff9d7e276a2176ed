"""Occlusion-aware generator: encode the source, warp its features, inpaint, decode.

Warping features rather than pixels lets the decoder fill in what the source does not
show; the occlusion map tells it where (0 = occluded, must be inpainted).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model_config import DenseMotionConfig
from .blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, warp_float
from .dense_motion import DenseMotionNetwork


def _features(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class OcclusionAwareGenerator(nn.Module):
    """forward(source_image, kp_driving, kp_source) -> dict(prediction, mask, occlusion_map,
    sparse_deformed, deformed).

    ``deformed`` (the source warped at full resolution) is for display and carries no
    gradient. With ``dense_motion=None`` there is no motion at all (an auto-encoder of
    the source) and only ``prediction`` is returned.
    """

    def __init__(
        self,
        num_channels: int = 3,
        num_kp: int = 10,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        num_bottleneck_blocks: int = 6,
        estimate_occlusion_map: bool = True,
        dense_motion: DenseMotionConfig | Mapping | None = DenseMotionConfig(),
        estimate_jacobian: bool = True,
        flow_resize_align_corners: bool = True,
        downsample: str = "bilinear",
    ):
        super().__init__()
        self.flow_resize_align_corners = flow_resize_align_corners
        self.dense_motion = None
        if dense_motion is not None:
            params = asdict(dense_motion) if isinstance(dense_motion, DenseMotionConfig) else dict(dense_motion)
            self.dense_motion = DenseMotionNetwork(
                num_kp=num_kp, num_channels=num_channels, estimate_occlusion_map=estimate_occlusion_map,
                estimate_jacobian=estimate_jacobian, downsample=downsample, **params,
            )
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(_features(block_expansion, max_features, i), _features(block_expansion, max_features, i + 1))
            for i in range(num_down_blocks)
        )
        bottleneck_features = _features(block_expansion, max_features, num_down_blocks)
        self.bottleneck = nn.Sequential(*(ResBlock2d(bottleneck_features) for _ in range(num_bottleneck_blocks)))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                _features(block_expansion, max_features, num_down_blocks - i),
                _features(block_expansion, max_features, num_down_blocks - i - 1),
            )
            for i in range(num_down_blocks)
        )
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, torch.Tensor]:
        out = self.first(source_image)
        sizes = []
        for block in self.down_blocks:
            sizes.append(out.shape[2:])
            out = block(out)

        result: dict[str, torch.Tensor] = {}
        if self.dense_motion is not None:
            motion = self.dense_motion(source_image, kp_driving, kp_source)
            result["mask"] = motion["mask"]
            result["sparse_deformed"] = motion["sparse_deformed"]
            out = self.deform_features(out, motion, result)
            with torch.no_grad():  # for visualisation only; no gradient needed
                result["deformed"] = warp_float(source_image, motion["deformation"], self.flow_resize_align_corners)

        out = self.bottleneck(out)
        for block, size in zip(self.up_blocks, reversed(sizes)):
            out = block(out, size=size)
        result["prediction"] = torch.sigmoid(self.final(out))
        return result

    def deform_features(self, features: torch.Tensor, motion: dict, result: dict) -> torch.Tensor:
        """Warp the encoded source by the dense flow and mask what it cannot explain.

        Flow and occlusion map come at the dense-motion resolution and are resized to the
        features' when the two differ; the occlusion map is also stored in ``result``.
        """
        out = warp_float(features, motion["deformation"], self.flow_resize_align_corners)
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            result["occlusion_map"] = occlusion
            if occlusion.shape[2:] != out.shape[2:]:
                occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear",
                                          align_corners=self.flow_resize_align_corners)
            out = out * occlusion.to(out.dtype)
        return out
