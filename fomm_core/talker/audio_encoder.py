"""Causal audio encoder: 100 Hz log-mels to one feature per video frame at several rates.

Strided 1-D convolutions bring the log-mels from 100 Hz to 25 Hz (one step per video
frame), then further stride-2 convolutions build a pyramid (25, 12.5, 6.25, 3.125 Hz at
four levels). Each level is brought back to the video length so the generator can read
every level at every frame.

Causality: every convolution is padded on the left only, with ``kernel - stride`` steps,
so output step ``j`` ends exactly at the end of its own stride block (input
``s * j + s - 1``). Video frame ``t``'s base feature therefore sees log-mels up to the end
of frame ``t`` and nothing later. A coarse step ``j`` of level ``l`` covers video frames up
to ``(j + 1) * 2**l - 1``; when a level is brought back to the video length, frame ``t``
holds the latest step whose inputs all lie at or before ``t`` (``(t + 1) // 2**l - 1``, zeros
before the first complete step) instead of interpolating toward a step not yet heard.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import TalkerModelConfig


class CausalConv1d(nn.Conv1d):
    """A Conv1d left-padded with ``kernel - stride`` steps: output ``j`` sees inputs ``<= s * j + s - 1``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        if kernel_size < stride:
            raise ValueError(f"kernel_size ({kernel_size}) must be at least the stride ({stride})")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        self.left_pad = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))

    def earliest_input(self, j: int) -> int:
        """Index of the first input step that output step ``j`` depends on."""
        return self.stride[0] * j - self.left_pad


def hold_causal(x: torch.Tensor, length: int, factor: int) -> torch.Tensor:
    """Coarse (B, C, N) steps back to (B, C, length) frames, causally.

    Frame ``t`` takes step ``(t + 1) // factor - 1``: the last step whose block of
    ``factor`` frames has ended by frame ``t``; frames before the first such step get zeros.
    """
    index = (torch.arange(length, device=x.device) + 1) // factor
    if length and int(index[-1]) > x.shape[-1]:
        raise ValueError(f"{x.shape[-1]} coarse steps cannot cover {length} frames at factor {factor}")
    return F.pad(x, (1, 0))[..., index]


def _chain_earliest(modules, j: int) -> int:
    """First input step that output ``j`` of a sequence of causal convs depends on."""
    for module in reversed([m for m in modules if isinstance(m, CausalConv1d)]):
        j = module.earliest_input(j)
    return j


class AudioEncoder(nn.Module):
    """Log-mels (B, A, n_mels), A = T * audio_per_frame, to ``levels`` tensors (B, T, C)."""

    def __init__(self, config: TalkerModelConfig):
        super().__init__()
        c = config.audio_channels
        self.audio_per_frame = config.audio_per_frame
        self.levels = config.levels
        stem: list[nn.Module] = [CausalConv1d(config.n_mels, c, 3), nn.GELU()]
        for _ in range(int(math.log2(config.audio_per_frame))):  # 100 Hz -> 25 Hz by stride-2 steps
            stem += [CausalConv1d(c, c, 4, stride=2), nn.GELU()]
        stem += [CausalConv1d(c, c, 3), nn.GELU()]
        self.stem = nn.Sequential(*stem)
        self.down = nn.ModuleList(
            nn.Sequential(CausalConv1d(c, c, 4, stride=2), nn.GELU(), CausalConv1d(c, c, 2), nn.GELU())
            for _ in range(config.levels - 1)
        )

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        if audio.dim() != 3:
            raise ValueError(f"audio must be (batch, frames, mels), got shape {tuple(audio.shape)}")
        if audio.shape[1] % self.audio_per_frame:
            raise ValueError(f"{audio.shape[1]} audio frames is not a multiple of {self.audio_per_frame} "
                             "per video frame")
        frames = audio.shape[1] // self.audio_per_frame
        x = self.stem(audio.transpose(1, 2))
        out = [x.transpose(1, 2)]
        for level, down in enumerate(self.down, start=1):
            x = down(x)
            out.append(hold_causal(x, frames, 2 ** level).transpose(1, 2))
        return out

    @property
    def alignment(self) -> int:
        """Video frames between coarse-step boundaries: chunks must start on multiples of it."""
        return 2 ** (self.levels - 1)

    def lookback_frames(self) -> int:
        """How many video frames before frame ``t`` its features may depend on (any level).

        Encoding a window that starts this many frames earlier (on a multiple of
        :attr:`alignment`) reproduces the features of the whole-sequence encoding exactly.
        """
        a = self.audio_per_frame
        period = self.alignment
        base = 4 * period * (self.levels + 8)  # far enough from the start that nothing is clipped
        worst = 0
        for t in range(base, base + period):
            for level in range(self.levels):
                step = (t + 1) // 2 ** level - 1
                first = _chain_earliest([m for d in self.down[:level] for m in d], step)
                first_audio = _chain_earliest(self.stem, first)
                worst = max(worst, t - first_audio // a)
        return worst
