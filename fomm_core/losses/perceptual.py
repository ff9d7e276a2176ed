"""Multi-scale perceptual loss: L1 between VGG-19 activations over an image pyramid.

FOMM's reconstruction loss (Siarohin et al. 2019, sec. 3.4) compares the generated frame with the
driving frame at scales 1, 1/2, 1/4, 1/8; coarse scales weight large misplacements, fine scales
texture. Downsampling is anti-aliased (Gaussian blur, then subsample) so that the coarse levels
are not dominated by aliasing of high-frequency detail.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import LAYER_NAMES, Vgg19Features

MIN_VGG_SIZE = 16  # four 2x2 max pools before relu5_1


def _gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(4 * sigma)))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (xs / sigma) ** 2)
    return (kernel / kernel.sum()).float()


class AntiAliasDownsample(nn.Module):
    """Blur with a Gaussian (sigma = (1/scale - 1) / 2) and resample to ``scale`` x the size.

    Integer factors subsample with a strided separable conv (cheap, exact pixel grid); other
    factors blur then resize bilinearly. Borders replicate so no dark frame leaks in.
    """

    def __init__(self, scale: float, channels: int = 3) -> None:
        super().__init__()
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        self.scale = float(scale)
        self.channels = channels
        inverse = 1.0 / scale
        self.stride = int(round(inverse)) if abs(inverse - round(inverse)) < 1e-6 else 0
        kernel = _gaussian_kernel_1d((inverse - 1.0) / 2.0) if scale < 1 else torch.ones(1)
        self.radius = kernel.numel() // 2
        self.register_buffer("kernel_x", kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("kernel_y", kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), persistent=False)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.scale == 1.0:
            return height, width
        if self.stride:
            return -(-height // self.stride), -(-width // self.stride)
        return max(1, math.floor(height * self.scale)), max(1, math.floor(width * self.scale))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return image
        r = self.radius
        x = F.pad(image, (r, r, r, r), mode="replicate")
        kx = self.kernel_x.to(image.dtype)
        ky = self.kernel_y.to(image.dtype)
        if self.stride:
            x = F.conv2d(x, kx, stride=(1, self.stride), groups=self.channels)
            return F.conv2d(x, ky, stride=(self.stride, 1), groups=self.channels)
        x = F.conv2d(F.conv2d(x, kx, groups=self.channels), ky, groups=self.channels)
        return F.interpolate(x, size=self.output_size(image.shape[2], image.shape[3]), mode="bilinear", align_corners=True)


class ImagePyramid(nn.Module):
    """``{scale: image at that scale}`` for a list of scales in (0, 1]."""

    def __init__(self, scales: Sequence[float], channels: int = 3) -> None:
        super().__init__()
        self.scales = [float(s) for s in scales]
        self.levels = nn.ModuleList(AntiAliasDownsample(s, channels) for s in self.scales)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return [level(image) for level in self.levels]


class PerceptualPyramidLoss(nn.Module):
    """sum over scales and VGG layers of ``weight_i * mean|vgg_i(pred) - vgg_i(target)|``.

    ``target`` never receives gradients and its features are computed without building a graph.
    With gradients on, prediction and target go through VGG as two calls (batching them would
    make autograd store activations and run the backward pass for the target half too); when no
    gradient is needed (validation) they share one batched call.
    """

    def __init__(
        self,
        vgg: Vgg19Features,
        scales: Sequence[float] = (1.0, 0.5, 0.25, 0.125),
        layer_weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0, 10.0),
    ) -> None:
        super().__init__()
        if len(layer_weights) != len(LAYER_NAMES):
            raise ValueError(f"need {len(LAYER_NAMES)} perceptual weights ({', '.join(LAYER_NAMES)}), got {len(layer_weights)}")
        self.vgg = vgg
        self.pyramid = ImagePyramid(scales)
        self.layer_weights = [float(w) for w in layer_weights]

    def per_scale(self, prediction: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
        """The loss at each pyramid scale (summed over layers), in ``scales`` order."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        for level in self.pyramid.levels:
            h, w = level.output_size(prediction.shape[2], prediction.shape[3])
            if min(h, w) < MIN_VGG_SIZE:
                raise ValueError(
                    f"pyramid scale {level.scale} turns {prediction.shape[2]}x{prediction.shape[3]} images into "
                    f"{h}x{w}, below the {MIN_VGG_SIZE}x{MIN_VGG_SIZE} VGG-19 needs up to relu5_1; "
                    "use larger frames or drop the smallest scale"
                )
        target = target.detach()
        batch = prediction.shape[0]
        needs_graph = torch.is_grad_enabled() and prediction.requires_grad
        if not needs_graph:
            both = torch.cat([prediction, target])
        losses = []
        for index, level in enumerate(self.pyramid.levels):
            if needs_graph:
                with torch.no_grad():
                    feats_target = self.vgg(level(target))
                feats_pred = self.vgg(level(prediction))
            else:
                feats = self.vgg(level(both))
                feats_pred = [f[:batch] for f in feats]
                feats_target = [f[batch:] for f in feats]
            total = prediction.new_zeros(())
            for weight, fp, ft in zip(self.layer_weights, feats_pred, feats_target):
                if weight != 0:
                    total = total + weight * (fp - ft).abs().mean()
            losses.append(total)
        return losses

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.per_scale(prediction, target)).sum()
