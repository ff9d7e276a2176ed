"""Image reconstruction metrics and the keypoint-quality landmark regression.

Image metrics take float tensors (B, C, H, W) in [0, 1] and return one value per image
(B,), so callers can pool them over frames of many clips. The landmark regression measures
how much of the face geometry the unsupervised keypoints capture: a linear map from
keypoints to ground-truth landmarks is fitted on training clips and scored on test clips,
as the error normalised by the inter-ocular distance (lower is better).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0  # dB for identical images, so pooled means stay finite in metrics.json
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")


def l1_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of [0, 1] pixels, per image."""
    _check_pair(pred, target)
    return (pred.float() - target.float()).abs().flatten(1).mean(1)


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor, cap: float = PSNR_CAP) -> torch.Tensor:
    """10 log10(1 / MSE) per image, capped at ``cap`` dB (identical images would be inf)."""
    _check_pair(pred, target)
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    floor = 10.0 ** (-cap / 10.0)
    return (-10.0 * torch.log10(mse.clamp_min(floor))).clamp_max(cap)


@functools.lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = g / g.sum()
    return g.float()


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, averaged over channels.

    The standard formulation: 11x11 Gaussian window with sigma 1.5 (separable), data range
    1, K1 = 0.01, K2 = 0.03, statistics over 'valid' window positions only (no padding).
    """
    _check_pair(pred, target)
    if min(pred.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got {tuple(pred.shape[-2:])}")
    x, y = pred.float(), target.float()
    channels = x.shape[1]
    g = _gaussian_window(window, sigma).to(x.device)
    kx = g.view(1, 1, 1, window).repeat(channels, 1, 1, 1)
    ky = g.view(1, 1, window, 1).repeat(channels, 1, 1, 1)

    def blur(img: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(img, kx, groups=channels), ky, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(1)


# --- keypoint quality: linear regression from keypoints to ground-truth landmarks ---------


def _design(keypoints: np.ndarray) -> np.ndarray:
    """(N, K, 2) keypoints to the (N, 2K + 1) design matrix (flattened, plus a bias column)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must be (N, K, 2), got {kp.shape}")
    return np.concatenate([kp.reshape(len(kp), -1), np.ones((len(kp), 1))], axis=1)


def fit_landmark_regressor(keypoints: np.ndarray, landmarks: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Closed-form ridge regression ``landmarks ~ [keypoints, 1] @ W``; returns W (2K+1, 2L).

    The bias is not penalised. ``ridge`` is relative to the mean squared keypoint feature,
    so it means the same for keypoints in [-1, 1] or in pixels.
    """
    x = _design(keypoints)
    y = np.asarray(landmarks, dtype=np.float64).reshape(len(x), -1)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} keypoint frames but {len(y)} landmark frames")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    gram = x.T @ x
    penalty = np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    scale = float(np.mean(x[:, :-1] ** 2)) if x.shape[1] > 1 else 1.0
    gram = gram + ridge * max(scale, 1e-12) * len(x) * penalty
    # lstsq instead of solve: stays defined when ridge is 0 and the system is singular.
    weights, *_ = np.linalg.lstsq(gram, x.T @ y, rcond=None)
    return weights


def predict_landmarks(weights: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """(N, K, 2) keypoints to (N, L, 2) landmarks with a fitted W."""
    out = _design(keypoints) @ weights
    return out.reshape(len(out), -1, 2)


def normalised_landmark_error(pred: np.ndarray, truth: np.ndarray, left_eye: int = 0, right_eye: int = 1) -> float:
    """Mean point-to-point error divided by each frame's inter-ocular distance."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"expected two (N, L, 2) arrays of one shape, got {pred.shape} and {truth.shape}")
    iod = np.linalg.norm(truth[:, left_eye] - truth[:, right_eye], axis=-1)
    valid = iod > 1e-6
    if not valid.any():
        return math.nan
    err = np.linalg.norm(pred - truth, axis=-1).mean(axis=1)
    return float(np.mean(err[valid] / iod[valid]))


def landmark_error(train_kp: np.ndarray, train_gt: np.ndarray, test_kp: np.ndarray, test_gt: np.ndarray,
                   ridge: float = 1e-3) -> float:
    """Fit on training frames, score on test frames (normalised mean error)."""
    weights = fit_landmark_regressor(train_kp, train_gt, ridge)
    return normalised_landmark_error(predict_landmarks(weights, test_kp), test_gt)
