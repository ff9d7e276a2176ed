"""The talker: speech to a FOMM keypoint sequence, one frame at a time (MS-Sync's generator).

Frame ``i`` is predicted from the keypoint history and the audio up to the end of frame
``i``::

    tokens   h_0 = source keypoints, h_1 = frame 0, ..., h_i = frame i-1
    z_i      = causal transformer over the last ``context`` tokens, query h_i
    branch_l = MLP(z_i, audio level l at frame i) -> (velocity, mask logits)   l < levels
    branch_* = MLP(z_i)                           -> (velocity, mask logits)   audio-free
    v_i      = sum_b softmax_b(mask logits) * velocity_b      (per value, over branches)
    frame i  = h_i + v_i

A token holds the frame's displacement from the source, its velocity (zero for the source,
a still image) and the source itself, each normalised by training statistics. Attention is
limited to the last ``context`` tokens with a learned bias per head and token age, so the
same numbers come out of the parallel teacher-forced pass (:meth:`Talker.forward`) and of
the step-by-step rollout with per-layer key/value caches (:meth:`Talker.rollout`), whose
memory is bounded by ``context`` however long the speech.

Training uses both (see :mod:`fomm_core.talker.training`): teacher forcing first, then
free-running rollouts, which is what the adversarial and sync losses need to see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .audio_encoder import AudioEncoder
from .config import TalkerModelConfig
from .dataset import KeypointStats

Cache = tuple[torch.Tensor, torch.Tensor]


def band_ages(length: int, context: int, device=None) -> torch.Tensor:
    """(length, length) ``query - key`` where the key is one of the query's last ``context``
    tokens (itself included), -1 elsewhere (masked)."""
    pos = torch.arange(length, device=device)
    ages = pos[:, None] - pos[None, :]
    return ages.masked_fill((ages < 0) | (ages >= context), -1)


class WindowAttention(nn.Module):
    """Causal self-attention over the last ``context`` tokens, biased by token age."""

    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.heads = heads
        self.context = context
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.age_bias = nn.Parameter(torch.zeros(heads, context))

    def forward(self, x: torch.Tensor, ages: torch.Tensor, cache: Cache | None = None) -> tuple[torch.Tensor, Cache]:
        """``x`` (B, N, dim) new tokens; ``cache`` keys/values of earlier tokens; ``ages``
        (N, cached + N). Returns the output and the keys/values of the last ``context - 1``
        tokens (what the next token may attend to besides itself)."""
        b, n, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)
        q, k, v = (t.view(b, n, self.heads, dim // self.heads).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        bias = self.age_bias[:, ages.clamp(min=0)].masked_fill(ages < 0, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0))
        out = out.transpose(1, 2).reshape(b, n, dim)
        first = max(0, k.shape[2] - (self.context - 1))
        new_cache = (k[:, :, first:], v[:, :, first:])
        return self.proj(out), new_cache


class Block(nn.Module):
    """Pre-norm transformer block (attention, then MLP)."""

    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, context)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, ages: torch.Tensor, cache: Cache | None = None) -> tuple[torch.Tensor, Cache]:
        a, cache = self.attn(self.ln1(x), ages, cache)
        x = x + a
        return x + self.mlp(self.ln2(x)), cache


class VelocityBranch(nn.Module):
    """MLP to a normalised velocity and per-value mask logits (zero at init: a still head)."""

    def __init__(self, in_dim: int, hidden: int, kp_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * kp_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        velocity, logits = self.net(x).chunk(2, dim=-1)
        return velocity, logits


@dataclass
class TalkerState:
    """Everything a rollout carries between frames: bounded by ``context``."""

    source: torch.Tensor  # (B, D)
    last: torch.Tensor  # (B, D) newest history frame (the next query)
    previous: torch.Tensor  # (B, D) the frame before it (for its velocity)
    caches: list[Cache | None]
    frames: int = 0  # frames generated so far


class Talker(nn.Module):
    """Autoregressive speech-to-keypoints generator (see the module docstring)."""

    def __init__(self, config: TalkerModelConfig):
        super().__init__()
        self.fomm_sha256 = ""  # weights_sha256 of the FOMM whose keypoints it learns (set by the caller)
        config.validate()
        self.config = config
        d = config.kp_dim
        self.audio_encoder = AudioEncoder(config)
        self.embed = nn.Linear(3 * d, config.dim)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.context) for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(config.dim)
        self.audio_branches = nn.ModuleList(
            VelocityBranch(config.dim + config.audio_channels, config.branch_hidden, d) for _ in range(config.levels))
        self.free_branch = VelocityBranch(config.dim, config.branch_hidden, d)
        self.register_buffer("kp_mean", torch.zeros(d))
        for name in ("kp_std", "motion_std", "velocity_std"):
            self.register_buffer(name, torch.ones(d))

    # ------------------------------------------------------------------ pieces
    def set_stats(self, stats: KeypointStats) -> None:
        """Normalisation from the training keypoints (saved with the weights)."""
        t = stats.tensors()
        for name, key in (("kp_mean", "mean"), ("kp_std", "std"), ("motion_std", "motion_std"),
                          ("velocity_std", "velocity_std")):
            getattr(self, name).copy_(t[key])

    def _tokens(self, history: torch.Tensor, previous: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        source = source.unsqueeze(1).expand_as(history)
        features = torch.cat([(history - source) / self.motion_std, (history - previous) / self.velocity_std,
                              (source - self.kp_mean) / self.kp_std], dim=-1)
        return self.embed(features)

    def _velocity(self, z: torch.Tensor, audio: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocities (B, N, D) and the branch weights (branches, B, N, D)."""
        outputs = [branch(torch.cat([z, a], dim=-1)) for branch, a in zip(self.audio_branches, audio)]
        outputs.append(self.free_branch(z))
        velocities = torch.stack([o[0] for o in outputs])
        weights = torch.softmax(torch.stack([o[1] for o in outputs]), dim=0)
        return (weights * velocities).sum(dim=0) * self.velocity_std, weights

    def encode_audio(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """(B, T * a, n_mels) log-mels to ``levels`` features (B, T, C)."""
        return self.audio_encoder(audio)

    # ------------------------------------------------------------------ teacher forcing
    def forward(self, source: torch.Tensor, keypoints: torch.Tensor, audio: torch.Tensor,
                return_weights: bool = False):
        """Teacher-forced velocities (B, T, D): frame ``i`` predicted from the true history.

        ``source`` (B, D), ``keypoints`` (B, T, D) the true frames, ``audio`` (B, T * a,
        n_mels). Equal to a rollout fed the true frames (tested), in one parallel pass.
        """
        feats = self.encode_audio(audio)
        if feats[0].shape[1] != keypoints.shape[1]:
            raise ValueError(f"{keypoints.shape[1]} keypoint frames but audio for {feats[0].shape[1]} frames")
        history = torch.cat([source.unsqueeze(1), keypoints[:, :-1]], dim=1)
        previous = torch.cat([source.unsqueeze(1), history[:, :-1]], dim=1)
        x = self._tokens(history, previous, source)
        ages = band_ages(x.shape[1], self.config.context, x.device)
        for block in self.blocks:
            x, _ = block(x, ages)
        velocity, weights = self._velocity(self.ln_f(x), feats)
        return (velocity, weights) if return_weights else velocity

    # ------------------------------------------------------------------ free running
    def start(self, source: torch.Tensor) -> TalkerState:
        """A fresh rollout from source keypoints (B, D): the still source image is frame -1."""
        return TalkerState(source=source, last=source, previous=source, caches=[None] * len(self.blocks))

    def step(self, state: TalkerState, audio_frame: list[torch.Tensor]) -> tuple[torch.Tensor, TalkerState]:
        """One frame (B, D) from the state and this frame's features (per level, (B, C))."""
        x = self._tokens(state.last.unsqueeze(1), state.previous.unsqueeze(1), state.source)
        cached = 0 if state.caches[0] is None else state.caches[0][0].shape[2]
        ages = torch.arange(cached, -1, -1, device=x.device).unsqueeze(0)
        caches = []
        for block, cache in zip(self.blocks, state.caches):
            x, cache = block(x, ages, cache)
            caches.append(cache)
        velocity, _ = self._velocity(self.ln_f(x), [a.unsqueeze(1) for a in audio_frame])
        frame = state.last + velocity[:, 0]
        return frame, TalkerState(state.source, frame, state.last, caches, state.frames + 1)

    def rollout(self, state: TalkerState, features: list[torch.Tensor],
                teacher: torch.Tensor | None = None) -> tuple[torch.Tensor, TalkerState]:
        """Generate one frame per step of ``features`` (per level (B, N, C)) from ``state``.

        With ``teacher`` (B, N, D) the true frames replace the generated ones in the history
        (teacher forcing, step by step; used to test the parallel pass).
        """
        frames = []
        for i in range(features[0].shape[1]):
            frame, state = self.step(state, [f[:, i] for f in features])
            frames.append(frame)
            if teacher is not None:
                state.last = teacher[:, i]
        return torch.stack(frames, dim=1), state

    def generate(self, audio: torch.Tensor, source: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Free-running keypoints (B, T, D) for log-mels (B, >= T * a, n_mels) from source (B, D).

        Gradients flow through the whole rollout when enabled (training).
        """
        a = self.config.audio_per_frame
        num_frames = audio.shape[1] // a if num_frames is None else num_frames
        if num_frames < 1 or audio.shape[1] < num_frames * a:
            raise ValueError(f"{audio.shape[1]} audio frames cannot drive {num_frames} video frames "
                             f"({a} audio frames each)")
        features = self.encode_audio(audio[:, : num_frames * a])
        frames, _ = self.rollout(self.start(source), features)
        return frames

    def stream(self, audio: torch.Tensor, source: torch.Tensor, num_frames: int | None = None,
               chunk_frames: int = 100) -> Iterator[torch.Tensor]:
        """:meth:`generate` in chunks of about ``chunk_frames`` frames, with flat memory.

        Each chunk re-encodes only its own audio plus the encoder's look-back (started on a
        coarse-step boundary), so the chunks concatenate to exactly :meth:`generate`'s output.
        """
        a = self.config.audio_per_frame
        num_frames = audio.shape[1] // a if num_frames is None else num_frames
        if num_frames < 1 or audio.shape[1] < num_frames * a:
            raise ValueError(f"{audio.shape[1]} audio frames cannot drive {num_frames} video frames")
        align = self.audio_encoder.alignment
        lookback = math.ceil(self.audio_encoder.lookback_frames() / align) * align
        chunk = max(1, math.ceil(chunk_frames / align)) * align
        state = self.start(source)
        for start in range(0, num_frames, chunk):
            end = min(num_frames, start + chunk)
            first = max(0, start - lookback)
            features = [f[:, start - first:] for f in self.encode_audio(audio[:, first * a:end * a])]
            frames, state = self.rollout(state, features)
            yield frames
