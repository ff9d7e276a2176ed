"""Building blocks shared by the FOMM networks: conv blocks, the hourglass, anti-aliased resize.

Coordinates follow :mod:`fomm_core.geometry` (``align_corners=True``): a map of any size
spans [-1, 1] from its first to its last pixel centre, so keypoints and flows computed at
one resolution are valid at every other.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry import make_coordinate_grid, warp


@functools.lru_cache(maxsize=64)
def coordinate_grid(height: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Cached (H, W, 2) identity grid; built once per size/dtype/device instead of every call."""
    # A normal tensor even if first requested under inference_mode: an inference tensor
    # could not later be saved for backward.
    with torch.inference_mode(False), torch.no_grad():
        return make_coordinate_grid(height, width, dtype=dtype, device=device)


def gaussian_heatmaps(keypoints: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """(B, K, 2) keypoints to (B, K, H, W) unnormalised Gaussians, in float32.

    Same values as :func:`fomm_core.geometry.keypoints_to_gaussian`, with the cached grid.
    """
    keypoints = keypoints.float()
    grid = coordinate_grid(height, width, torch.float32, keypoints.device)
    diff = grid.view(1, 1, height, width, 2) - keypoints.view(*keypoints.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)


def warp_float(image: torch.Tensor, sampling_grid: torch.Tensor, resize_align_corners: bool = True) -> torch.Tensor:
    """:func:`geometry.warp` computed in float32 and returned in the image's dtype.

    Under bf16 autocast a bf16 grid would be off by up to a pixel at 256 px; sampling
    positions are therefore always float32.
    """
    return warp(image.float(), sampling_grid.float(), resize_align_corners).to(image.dtype)


class AntiAliasResize(nn.Module):
    """Gaussian blur then resample, so downscaling does not alias fine detail.

    Blur: sigma = (1/scale - 1) / 2, kernel 2*round(4*sigma)+1, applied as two fixed 1-D
    depthwise convolutions (same result as the 2-D kernel, far fewer operations).
    Resample, ``mode="bilinear"``: bilinear with ``align_corners=True``, which keeps pixel i
    of the small map at the same normalised coordinate as in the large one.
    ``mode="strided"``: keep every int(1/scale)-th blurred pixel starting at the first, the
    original FOMM code's sampling (its weights were trained on it; the small map's pixels
    then sit slightly off the large map's [-1, 1] coordinates).
    """

    def __init__(self, channels: int, scale: float, mode: str = "bilinear"):
        super().__init__()
        if mode not in ("bilinear", "strided"):
            raise ValueError(f"mode must be 'bilinear' or 'strided', got {mode!r}")
        self.channels = channels
        self.scale = scale
        self.mode = mode
        if scale == 1:
            return
        self.stride = int(1 / scale)
        kernel = gaussian_kernel_1d(scale)
        size = kernel.numel()
        self.padding = size // 2
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("kernel_x", kernel.view(1, 1, 1, size).repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("kernel_y", kernel.view(1, 1, size, 1).repeat(channels, 1, 1, 1), persistent=False)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.scale == 1:
            return height, width
        if self.mode == "strided":
            return -(-height // self.stride), -(-width // self.stride)
        return int(height * self.scale), int(width * self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x
        if self.mode == "strided":  # only the kept rows and columns are computed
            x = F.conv2d(x, self.kernel_x.to(x.dtype), padding=(0, self.padding), stride=(1, self.stride),
                         groups=self.channels)
            return F.conv2d(x, self.kernel_y.to(x.dtype), padding=(self.padding, 0), stride=(self.stride, 1),
                            groups=self.channels)
        x = F.conv2d(x, self.kernel_x.to(x.dtype), padding=(0, self.padding), groups=self.channels)
        x = F.conv2d(x, self.kernel_y.to(x.dtype), padding=(self.padding, 0), groups=self.channels)
        size = self.output_size(*x.shape[2:])
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def gaussian_kernel_1d(scale: float) -> torch.Tensor:
    """The normalised 1-D blur of :class:`AntiAliasResize` for ``scale`` (float32)."""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-coords**2 / (2 * sigma**2))
    return kernel / kernel.sum()


class SameBlock2d(nn.Module):
    """Conv + BatchNorm + ReLU at constant resolution (the generator's first layer)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """Conv + BatchNorm + ReLU, then 2x average pooling."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock2d(nn.Module):
    """Nearest 2x upsampling (or to an explicit size), then conv + BatchNorm + ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class ResBlock2d(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice, plus the input); keeps shape."""

    def __init__(self, features: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(features)
        self.conv1 = nn.Conv2d(features, features, kernel_size, padding=padding)
        self.norm2 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return x + out


def _level_features(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class Hourglass(nn.Module):
    """U-Net: ``num_blocks`` down blocks, as many up blocks, skip concatenation at each level.

    The output is the concatenation of the input with the last decoder features, so
    ``out_channels = block_expansion + in_features``. Spatial sizes need not be powers of
    two: each up block upsamples to the size of the skip it is joined with.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else _level_features(block_expansion, max_features, i),
                _level_features(block_expansion, max_features, i + 1),
            )
            for i in range(num_blocks)
        )
        up_blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * _level_features(block_expansion, max_features, i + 1)
            up_blocks.append(UpBlock2d(in_filters, _level_features(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(up_blocks)
        self.out_channels = block_expansion + in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down_blocks:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up_blocks:
            skip = skips.pop()
            out = block(out, size=skip.shape[2:])
            out = torch.cat([out, skip.to(out.dtype)], dim=1)
        return out

