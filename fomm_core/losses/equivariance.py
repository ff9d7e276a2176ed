"""Equivariance constraints on the keypoint detector (FOMM, Siarohin et al. 2019, sec. 3.3).

A random smooth warp T (affine + thin-plate spline) is applied to the driving frame. Keypoints
found in the warped frame, mapped back through T, must land on the driving keypoints, and the
local affine frames (jacobians) must compose: J_driving ≈ J_T(kp') @ J_transformed. This is what
makes unsupervised keypoints consistent without labels.

Convention (as ``fomm_core.geometry``): points are (x, y) in [-1, 1], align_corners=True.
``transform_frame`` is a backward warp: output(p) = image(T(p)), so content at q in the input
appears at p with T(p) = q, which is why ``transform_points`` maps *warped-frame* keypoints back.
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch
import torch.nn.functional as F

from ..geometry import make_coordinate_grid


class RandomTransform:
    """A batch of random affine + thin-plate-spline warps of the [-1, 1] plane.

    T(p) = A p + b + sum_k w_k U(|p - c_k|), with A, b = identity + N(0, sigma_affine) noise,
    control points c_k on a ``points_tps`` x ``points_tps`` grid, w_k ~ N(0, sigma_tps) per axis
    and U(r) = r^2 log r. Drawn from ``generator`` so a run is reproducible.
    """

    def __init__(
        self,
        batch_size: int,
        *,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        # Draw on the generator's own device (a CUDA generator cannot fill CPU tensors).
        draw_on = generator.device if generator is not None else "cpu"
        noise = torch.randn(batch_size, 2, 3, generator=generator, dtype=dtype, device=draw_on) * sigma_affine
        self.theta = (noise + torch.eye(2, 3, dtype=dtype, device=draw_on)).to(device)  # (B, 2, 3)
        self.control_points = make_coordinate_grid(points_tps, points_tps, dtype).view(-1, 2).to(device)  # (K, 2)
        self.control_params = (
            torch.randn(batch_size, points_tps * points_tps, 2, generator=generator, dtype=dtype, device=draw_on)
            * sigma_tps
        ).to(device)  # (B, K, 2)
        self.use_tps = sigma_tps != 0

    @property
    def batch_size(self) -> int:
        return self.theta.shape[0]

    def rows(self, start: int, stop: int) -> "RandomTransform":
        """The warps of samples ``start..stop-1``: one draw per optimizer step, split across the
        micro-batches of gradient accumulation exactly as it would apply to the whole batch."""
        part = copy.copy(self)
        part.theta = self.theta[start:stop]
        part.control_params = self.control_params[start:stop]
        return part

    def transform_points(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) → (B, N, 2): T applied to each point."""
        theta = self.theta.to(points.dtype)
        out = points @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
        if self.use_tps:
            diff = points.unsqueeze(2) - self.control_points.to(points.dtype).view(1, 1, -1, 2)  # (B, N, K, 2)
            r2 = (diff**2).sum(-1)
            # U(r) = r^2 log r = 0.5 r^2 log r^2; the clamp keeps log (and its gradient) finite at r = 0.
            basis = 0.5 * r2 * torch.log(r2.clamp_min(1e-12))
            out = out + basis @ self.control_params.to(points.dtype)
        return out

    def transform_frame(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → the image warped by T (bilinear, reflection at the borders)."""
        batch, _, height, width = image.shape
        grid = make_coordinate_grid(height, width, image.dtype, image.device).view(1, -1, 2).expand(batch, -1, -1)
        sampling = self.transform_points(grid).view(batch, height, width, 2)
        return F.grid_sample(image, sampling, mode="bilinear", padding_mode="reflection", align_corners=True)

    def jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) → (B, N, 2, 2), J[i, j] = d T_i / d p_j at each point, in closed form.

        Affine part: A. Each TPS term w_k U adds w_k (log r_k^2 + 1) (p - c_k)^T, since
        d(0.5 r^2 log r^2)/dp = (log r^2 + 1)(p - c_k). Being an ordinary expression of
        ``points`` (no autograd.grad inside the loss), the jacobian loss still trains the
        keypoint positions, and the step has no double backward, so torch.compile can take it.
        """
        batch, count, _ = points.shape
        jac = self.theta[:, :, :2].to(points.dtype).unsqueeze(1).expand(batch, count, 2, 2)
        if self.use_tps:
            diff = points.unsqueeze(2) - self.control_points.to(points.dtype).view(1, 1, -1, 2)  # (B, N, K, 2)
            scale = torch.log((diff**2).sum(-1).clamp_min(1e-12)) + 1.0  # (B, N, K)
            # sum_k w_k[i] * scale_k * diff_k[j]
            jac = jac + torch.einsum("bnk,bki,bnkj->bnij", scale, self.control_params.to(points.dtype), diff)
        return jac


def equivariance_losses(
    detector_out_driving: Mapping[str, torch.Tensor],
    detector_out_transformed: Mapping[str, torch.Tensor],
    transform: RandomTransform,
    weights: tuple[float, float] = (10.0, 10.0),
) -> dict[str, torch.Tensor]:
    """Weighted equivariance losses: ``{'equivariance_value': ..., 'equivariance_jacobian': ...}``.

    ``detector_out_*`` are keypoint dicts (``value`` (B, K, 2), optional ``jacobian``
    (B, K, 2, 2)) for the driving frame and for ``transform.transform_frame(driving)``.
    value term: mean |kp_driving - T(kp_transformed)|;
    jacobian term: mean |I - inv(J_driving) @ (J_T(kp_transformed) @ J_transformed)|.
    A term whose weight is 0 (or whose jacobians are absent) is left out of the dict.
    """
    weight_value, weight_jacobian = (float(w) for w in weights)
    kp_driving = detector_out_driving["value"]
    kp_transformed = detector_out_transformed["value"]
    if kp_driving.shape != kp_transformed.shape:
        raise ValueError(f"keypoint shapes differ: {tuple(kp_driving.shape)} vs {tuple(kp_transformed.shape)}")
    losses: dict[str, torch.Tensor] = {}
    if weight_value != 0:
        mapped = transform.transform_points(kp_transformed)
        losses["equivariance_value"] = weight_value * (kp_driving - mapped).abs().mean()
    has_jacobians = "jacobian" in detector_out_driving and "jacobian" in detector_out_transformed
    if weight_jacobian != 0 and has_jacobians:
        jac_t = transform.jacobian(kp_transformed)
        composed = jac_t @ detector_out_transformed["jacobian"]
        # solve(J_d, X) = inv(J_d) @ X, more stable than forming the inverse.
        relative = torch.linalg.solve(detector_out_driving["jacobian"], composed)
        eye = torch.eye(2, dtype=relative.dtype, device=relative.device)
        losses["equivariance_jacobian"] = weight_jacobian * (eye - relative).abs().mean()
    return losses
