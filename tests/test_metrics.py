"""Image metrics against known values, and the keypoint -> landmark regression."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fomm_core.metrics import (
    PSNR_CAP, fit_landmark_regressor, l1_per_image, landmark_error, normalised_landmark_error, predict_landmarks,
    psnr_per_image, ssim_per_image,
)


def images(batch=2, size=24, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g)


def test_identical_images_are_perfect():
    x = images()
    assert torch.equal(l1_per_image(x, x), torch.zeros(2))
    assert torch.allclose(psnr_per_image(x, x), torch.full((2,), PSNR_CAP))
    assert torch.allclose(ssim_per_image(x, x), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("offset", [0.01, 0.1, 0.25])
def test_constant_offset_gives_exact_l1_and_psnr(offset):
    x = images() * 0.5
    y = x + offset
    assert torch.allclose(l1_per_image(y, x), torch.full((2,), offset), atol=1e-6)
    assert torch.allclose(psnr_per_image(y, x), torch.full((2,), -20 * math.log10(offset)), atol=1e-3)


def test_ssim_of_flat_images_is_the_luminance_term():
    a, b = 0.3, 0.7
    x = torch.full((1, 3, 16, 16), a)
    y = torch.full((1, 3, 16, 16), b)
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim_per_image(x, y).item() == pytest.approx(expected, rel=1e-4)


def test_ssim_matches_direct_formula_on_one_window():
    """An 11x11 image has exactly one valid window: compute SSIM by hand with numpy."""
    x, y = images(1, 11, seed=1), images(1, 11, seed=2)
    coords = np.arange(11) - 5
    g = np.exp(-coords**2 / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(3):
        a, b = x[0, c].double().numpy(), y[0, c].double().numpy()
        ma, mb = (w * a).sum(), (w * b).sum()
        va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
        cov = (w * a * b).sum() - ma * mb
        values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert ssim_per_image(x, y).item() == pytest.approx(np.mean(values), abs=1e-5)


def test_ssim_falls_with_more_noise():
    x = torch.nn.functional.avg_pool2d(images(1, 64), 5, 1, 2)  # smooth, structured image
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x.shape, generator=g)
    scores = [ssim_per_image((x + s * noise).clamp(0, 1), x).item() for s in (0.0, 0.02, 0.1, 0.3)]
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.5


def test_metrics_reject_mismatched_or_tiny_images():
    with pytest.raises(ValueError):
        l1_per_image(images(1, 16), images(1, 24))
    with pytest.raises(ValueError):
        ssim_per_image(images(1, 8), images(1, 8))


def _keypoints(n, k=10, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, k, 2))


def test_regression_recovers_a_known_linear_map():
    rng = np.random.default_rng(5)
    true_w = rng.normal(size=(21, 10))  # 10 keypoints * 2 + bias -> 5 landmarks * 2
    train_kp, test_kp = _keypoints(200, seed=1), _keypoints(50, seed=2)

    def apply(kp):
        return (np.concatenate([kp.reshape(len(kp), -1), np.ones((len(kp), 1))], 1) @ true_w).reshape(-1, 5, 2)

    weights = fit_landmark_regressor(train_kp, apply(train_kp), ridge=0.0)
    assert np.allclose(weights, true_w, atol=1e-8)
    assert np.allclose(predict_landmarks(weights, test_kp), apply(test_kp), atol=1e-8)
    assert landmark_error(train_kp, apply(train_kp), test_kp, apply(test_kp), ridge=0.0) < 1e-8
    # A ridge penalty shrinks the (non-bias) weights.
    shrunk = fit_landmark_regressor(train_kp, apply(train_kp), ridge=1.0)
    assert np.linalg.norm(shrunk[:-1]) < np.linalg.norm(weights[:-1])


def test_error_is_normalised_by_inter_ocular_distance():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (30, 5, 2))
    iod = np.linalg.norm(truth[:, 0] - truth[:, 1], axis=1)
    direction = np.array([0.6, 0.8])  # unit vector
    pred = truth + (0.1 * iod)[:, None, None] * direction  # every point off by 10% of its frame's IOD
    assert normalised_landmark_error(pred, truth) == pytest.approx(0.1)
    # Scale invariance: the same configuration in 3x larger pixels scores the same.
    assert normalised_landmark_error(3 * pred, 3 * truth) == pytest.approx(0.1)
