"""Multi-scale syncers: do these keypoints move with this audio? (MS-Sync's sync experts)

At every pyramid level (:mod:`fomm_core.talker.pyramid`) a keypoint encoder reads a window
of ``window`` frames and an audio encoder the ``window * audio_per_frame`` log-mel frames
of the same time span; both end in an L2-normalised embedding. They are trained
contrastively (:func:`info_nce`): among consecutive window positions of one clip, each
keypoint window must pick its own audio window and vice versa, so the other offsets of the
same clip are the negatives and the embeddings learn timing, not identity.

Keypoint windows enter as two views of all ``num_kp * 6`` values: the deviation from the
window's own mean over ``motion_std`` (how the face moves inside the window, identity
free) and the values over the global ``mean``/``std`` (how open the mouth is).

Offsets (:func:`sync_scores`, :func:`estimate_offset`): offset ``o`` compares the keypoint
window at frame ``i`` with the audio window at frame ``i + o``. Audio that lags the motion
by ``d`` frames (a sound heard ``d`` frames after the mouth moved) scores best at ``o = +d``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import SyncerConfig
from .dataset import KeypointStats
from .pyramid import pyramid


class LevelSyncer(nn.Module):
    """One level's keypoint and audio window encoders."""

    def __init__(self, config: SyncerConfig):
        super().__init__()
        h, w, e = config.hidden, config.window, config.embed_dim
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.kp_encoder = nn.Sequential(
            nn.Conv1d(2 * config.kp_dim, h, 3, padding=1), act(),
            nn.Conv1d(h, h, 3, padding=1), act(),
            nn.Flatten(), nn.Linear(h * w, h), act(), nn.Linear(h, e),
        )
        audio: list[nn.Module] = [nn.Conv1d(config.n_mels, h, 3, padding=1), act()]
        for _ in range(int(math.log2(config.audio_per_frame))):  # audio_window -> window steps
            audio += [nn.Conv1d(h, h, 4, stride=2, padding=1), act()]
        audio += [nn.Conv1d(h, h, 3, padding=1), act(), nn.Flatten(), nn.Linear(h * w, h), act(), nn.Linear(h, e)]
        self.audio_encoder = nn.Sequential(*audio)


class Syncers(nn.Module):
    """``levels`` :class:`LevelSyncer` plus the keypoint normalisation (saved with them)."""

    def __init__(self, config: SyncerConfig):
        super().__init__()
        self.fomm_sha256 = ""  # weights_sha256 of the FOMM whose keypoints it learns (set by the caller)
        config.validate()
        self.config = config
        self.levels = nn.ModuleList(LevelSyncer(config) for _ in range(config.levels))
        d = config.kp_dim
        self.register_buffer("kp_mean", torch.zeros(d))
        self.register_buffer("kp_std", torch.ones(d))
        self.register_buffer("motion_std", torch.ones(d))

    def set_stats(self, stats: KeypointStats) -> None:
        t = stats.tensors()
        self.kp_mean.copy_(t["mean"])
        self.kp_std.copy_(t["std"])
        self.motion_std.copy_(t["motion_std"])

    # ------------------------------------------------------------------ embeddings
    def embed_kp(self, level: int, windows: torch.Tensor) -> torch.Tensor:
        """(N, D, window) keypoint windows to (N, E) unit embeddings."""
        local = (windows - windows.mean(dim=-1, keepdim=True)) / self.motion_std[:, None]
        absolute = (windows - self.kp_mean[:, None]) / self.kp_std[:, None]
        return F.normalize(self.levels[level].kp_encoder(torch.cat([local, absolute], dim=1)), dim=-1)

    def embed_audio(self, level: int, windows: torch.Tensor) -> torch.Tensor:
        """(N, n_mels, window * a) log-mel windows to (N, E) unit embeddings."""
        return F.normalize(self.levels[level].audio_encoder(windows), dim=-1)

    # ------------------------------------------------------------------ sequences
    def pyramids(self, keypoints: torch.Tensor, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Keypoints (B, T, D) and log-mels (B, T * a, n_mels) to per-level (B, C, T_l)."""
        levels, kernel = self.config.levels, self.config.pyramid_kernel
        return pyramid(keypoints.transpose(1, 2), levels, kernel), pyramid(audio.transpose(1, 2), levels, kernel)

    def windows(self, kp_level: torch.Tensor, audio_level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every aligned window position of one level: (B, n, D, w) and (B, n, n_mels, w * a)."""
        w, a = self.config.window, self.config.audio_per_frame
        if kp_level.shape[-1] < w or audio_level.shape[-1] < w * a:
            return (kp_level.new_zeros(kp_level.shape[0], 0, kp_level.shape[1], w),
                    audio_level.new_zeros(audio_level.shape[0], 0, audio_level.shape[1], w * a))
        kw = kp_level.unfold(-1, w, 1).transpose(1, 2)
        aw = audio_level.unfold(-1, w * a, a).transpose(1, 2)
        n = min(kw.shape[1], aw.shape[1])
        return kw[:, :n], aw[:, :n]

    def aligned_similarity(self, keypoints: torch.Tensor, audio: torch.Tensor) -> list[torch.Tensor | None]:
        """Per level, the cosine similarity (B, n) of each keypoint window with its own audio
        window (offset 0); ``None`` where the sequence is shorter than one window."""
        out: list[torch.Tensor | None] = []
        for level, (kp, au) in enumerate(zip(*self.pyramids(keypoints, audio))):
            kw, aw = self.windows(kp, au)
            b, n = kw.shape[:2]
            if n == 0:
                out.append(None)
                continue
            ek = self.embed_kp(level, kw.reshape(b * n, *kw.shape[2:]))
            ea = self.embed_audio(level, aw.reshape(b * n, *aw.shape[2:]))
            out.append((ek * ea).sum(dim=-1).view(b, n))
        return out


def info_nce(kp_emb: torch.Tensor, audio_emb: torch.Tensor, valid: torch.Tensor, temperature: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over the window positions of each sample.

    ``kp_emb``/``audio_emb`` (B, M, E) unit embeddings of M consecutive positions of one
    clip, ``valid`` (B, M) which positions exist. Pair (i, i) is the positive; (i, j != i),
    the same clip at offset j - i, the negatives. Returns the loss and the top-1 accuracy.
    """
    logits = torch.einsum("bme,bne->bmn", kp_emb, audio_emb) / temperature
    pair = valid[:, :, None] & valid[:, None, :]
    logits = logits.masked_fill(~pair, -1e9)  # finite: rows of missing positions stay NaN-free
    rows = valid & (valid.sum(dim=1, keepdim=True) > 1)  # a lone position has no negative
    if not bool(rows.any()):
        raise ValueError("no sample has two window positions to contrast")
    target = torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)[rows]
    kp_logits, audio_logits = logits[rows], logits.transpose(1, 2)[rows]
    loss_kp = F.cross_entropy(kp_logits, target)
    loss_audio = F.cross_entropy(audio_logits, target)
    accuracy = (kp_logits.argmax(dim=-1) == target).float().mean()
    return 0.5 * (loss_kp + loss_audio), accuracy


@torch.no_grad()
def sync_scores(syncers: Syncers, keypoints: torch.Tensor | np.ndarray, audio: torch.Tensor | np.ndarray,
                max_offset: int = 15, level: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, distances)``: mean embedding distance for each offset in [-max_offset, max_offset].

    ``keypoints`` (T, D) and ``audio`` (T * a, n_mels) of one clip; offsets in frames of
    ``level``. Each keypoint window at frame ``i`` is compared with the audio window at
    ``i + o``; only windows for which every offset exists are used, so every offset
    averages the same windows. Distances are Euclidean between unit embeddings (0..2).
    Raises ValueError when the clip is too short for the offset range.
    """
    device = syncers.kp_mean.device
    kp, au = (x.detach().float().to(device) if torch.is_tensor(x) else
              torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device) for x in (keypoints, audio))
    kp_pyr, au_pyr = syncers.pyramids(kp[None], au[None])
    kw, aw = syncers.windows(kp_pyr[level], au_pyr[level])
    n = kw.shape[1]
    lo, hi = max_offset, n - 1 - max_offset  # windows i with i +- max_offset inside [0, n)
    if hi < lo:
        raise ValueError(f"a clip of {kp.shape[0]} frames is too short for offsets of +-{max_offset} at level {level}")
    was_training = syncers.training
    syncers.eval()
    ek = syncers.embed_kp(level, kw[0, lo:hi + 1])
    ea = syncers.embed_audio(level, aw[0])
    syncers.train(was_training)
    offsets = np.arange(-max_offset, max_offset + 1)
    dists = np.array([float((ek - ea[lo + o:hi + 1 + o]).norm(dim=-1).mean()) for o in offsets])
    return offsets, dists


def lse_scores(offsets: np.ndarray, distances: np.ndarray) -> dict[str, float]:
    """LSE-D-like distance at offset 0 and LSE-C-like confidence (median minus minimum)."""
    zero = int(np.flatnonzero(offsets == 0)[0])
    return {"sync_distance": float(distances[zero]),
            "sync_confidence": float(np.median(distances) - distances.min()),
            "sync_offset": int(offsets[int(np.argmin(distances))])}


def estimate_offset(syncers: Syncers, keypoints, audio, max_offset: int = 15, level: int = 0) -> int:
    """The offset (frames of ``level``) with the smallest distance; +d when audio lags by d."""
    offsets, dists = sync_scores(syncers, keypoints, audio, max_offset, level)
    return int(offsets[int(np.argmin(dists))])
