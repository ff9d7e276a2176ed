"""The temporal pyramid shared by the syncers and the multi-scale sync loss.

Each level is the previous one smoothed by a centred moving average (reflect padding, so a
constant signal stays constant up to the edges) and then subsampled by two, keeping steps
0, 2, 4, ...: a length ``T`` becomes ``ceil(T / 2)``. Keypoints (25 Hz) and audio features
(100 Hz) go through the same operation, so a keypoint window of ``w`` frames and an audio
window of ``w * audio_per_frame`` frames cover the same time span at every level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def moving_average(x: torch.Tensor, kernel: int = 7) -> torch.Tensor:
    """Centred moving average of ``x`` (B, C, T) over time; same length.

    Edges are reflect-padded; a sequence too short to reflect (T <= kernel // 2) is
    padded by repeating its end values instead.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and positive, got {kernel}")
    if x.dim() != 3:
        raise ValueError(f"expected (batch, channels, time), got shape {tuple(x.shape)}")
    half = kernel // 2
    if half == 0 or x.shape[-1] == 0:
        return x
    mode = "reflect" if x.shape[-1] > half else "replicate"
    padded = F.pad(x, (half, half), mode=mode)
    return padded.unfold(-1, kernel, 1).mean(dim=-1)


def downsample(x: torch.Tensor, kernel: int = 7) -> torch.Tensor:
    """One pyramid step: smooth, then keep every second step (length ``ceil(T / 2)``)."""
    return moving_average(x, kernel)[..., ::2]


def pyramid(x: torch.Tensor, levels: int, kernel: int = 7) -> list[torch.Tensor]:
    """``[x, down(x), down(down(x)), ...]``: ``levels`` tensors (B, C, ceil(T / 2**l))."""
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    out = [x]
    for _ in range(levels - 1):
        out.append(downsample(out[-1], kernel))
    return out


def level_length(length: int, level: int) -> int:
    """Length of pyramid level ``level`` of a sequence of ``length`` steps."""
    for _ in range(level):
        length = (length + 1) // 2
    return length
