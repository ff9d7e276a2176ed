"""One picture of what the model does: per sample, a row of
source+keypoints | driving+keypoints | prediction | occlusion map | source warped by the motion.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

# Distinct colours, cycled when there are more keypoints.
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
    [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
], dtype=np.uint8)


def to_uint8_images(images: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(B, C, h, w) floats in [0, 1] (C = 1 or 3) to (B, H, W, 3) uint8 at ``size``."""
    images = images.detach().float().cpu()
    if images.shape[2:] != size:
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def draw_keypoints(image: np.ndarray, points: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Filled squares at ``points`` ((K, 2), x/y in [-1, 1]) on a copy of (H, W, 3) ``image``."""
    out = image.copy()
    height, width = out.shape[:2]
    radius = radius if radius is not None else max(1, min(height, width) // 64)
    for k, (x, y) in enumerate(points):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        cx = int(round((x + 1) / 2 * (width - 1)))
        cy = int(round((y + 1) / 2 * (height - 1)))
        out[max(0, cy - radius):cy + radius + 1, max(0, cx - radius):cx + radius + 1] = PALETTE[k % len(PALETTE)]
    return out


def sample_grid(source: torch.Tensor, driving: torch.Tensor, outputs: Mapping, max_rows: int = 4) -> np.ndarray:
    """The training sample grid as one (rows*H, cols*W, 3) uint8 image."""
    rows = min(max_rows, source.shape[0])
    size = (source.shape[2], source.shape[3])
    src = to_uint8_images(source[:rows], size)
    drv = to_uint8_images(driving[:rows], size)
    columns = [
        [draw_keypoints(img, kp) for img, kp in zip(src, outputs["kp_source"]["value"][:rows].detach().float().cpu().numpy())],
        [draw_keypoints(img, kp) for img, kp in zip(drv, outputs["kp_driving"]["value"][:rows].detach().float().cpu().numpy())],
        list(to_uint8_images(outputs["prediction"][:rows], size)),
    ]
    for key in ("occlusion_map", "deformed"):
        if key in outputs:
            columns.append(list(to_uint8_images(outputs[key][:rows], size)))
    return np.concatenate([np.concatenate(row, axis=1) for row in zip(*columns)], axis=0)
