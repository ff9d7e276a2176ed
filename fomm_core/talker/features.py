"""FOMM keypoints as flat per-frame vectors, and the per-clip keypoint files.

A frame is ``num_kp * 6`` values: the ``num_kp x 2`` positions (x, y in [-1, 1]) first,
then the ``num_kp x 4`` Jacobian entries (row-major 2x2 per keypoint). The talker predicts
these vectors; :func:`vector_to_kp` turns them back into the ``{"value", "jacobian"}`` dict
the FOMM generator renders.

Keypoint files: ``{keypoints_dir}/{partition}/{clip_id}.npz`` with ``value`` (F, K, 2),
``jacobian`` (F, K, 2, 2) float32, ``fps`` (one entry per video frame of the clip) and
``fomm_sha256``, the weights hash of the FOMM checkpoint that detected them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import FommError

KP = dict[str, torch.Tensor]


def kp_to_vector(kp: dict) -> torch.Tensor | np.ndarray:
    """``{"value": (..., K, 2), "jacobian": (..., K, 2, 2)}`` to (..., K * 6) (torch or numpy)."""
    value, jacobian = kp["value"], kp["jacobian"]
    lead = value.shape[:-2]
    if isinstance(value, np.ndarray):
        return np.concatenate([value.reshape(*lead, -1), jacobian.reshape(*lead, -1)], axis=-1).astype(np.float32)
    return torch.cat([value.reshape(*lead, -1), jacobian.reshape(*lead, -1)], dim=-1)


def vector_to_kp(vec: torch.Tensor | np.ndarray) -> dict:
    """Inverse of :func:`kp_to_vector`: (..., K * 6) to ``{"value", "jacobian"}``."""
    dim = vec.shape[-1]
    if dim % 6:
        raise ValueError(f"a keypoint vector has K * 6 values, got {dim}")
    k = dim // 6
    lead = tuple(vec.shape[:-1])
    return {"value": vec[..., : 2 * k].reshape(*lead, k, 2), "jacobian": vec[..., 2 * k:].reshape(*lead, k, 2, 2)}


def _as_float_batch(frames) -> torch.Tensor:
    """Float (B, 3, H, W) in [0, 1] from a float tensor batch or a uint8 (B, H, W, 3) array."""
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise ValueError(f"numpy frames must be uint8 (B, H, W, 3), got {frames.dtype} {frames.shape}")
        from ..data.datasets import to_tensor
        return to_tensor(frames)
    if not torch.is_tensor(frames) or frames.dim() != 4:
        raise ValueError("frames must be (B, 3, H, W) float tensors or (B, H, W, 3) uint8 arrays")
    return frames.float() if frames.dtype != torch.uint8 else frames.float().div_(255.0)


@torch.inference_mode()
def extract_clip_keypoints(kp_detector: torch.nn.Module, frames_iter: Iterable,
                           device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Run the keypoint detector over a clip's frame batches.

    ``frames_iter`` yields float (B, 3, H, W) tensors in [0, 1] (``ClipFramesDataset.
    iter_clip_frames``) or uint8 (B, H, W, 3) arrays (``ShardStore.iter_frames``). Returns
    float32 numpy ``value`` (F, K, 2) and ``jacobian`` (F, K, 2, 2).
    """
    was_training = kp_detector.training
    kp_detector.eval()
    values, jacobians = [], []
    try:
        for frames in frames_iter:
            kp = kp_detector(_as_float_batch(frames).to(device))
            if "jacobian" not in kp:
                raise FommError("the keypoint detector predicts no Jacobians; the talker needs a model "
                                "trained with estimate_jacobian: true")
            values.append(kp["value"].float().cpu().numpy())
            jacobians.append(kp["jacobian"].float().cpu().numpy())
    finally:
        kp_detector.train(was_training)
    if not values:
        raise FommError("the clip has no frames to extract keypoints from")
    return {"value": np.concatenate(values).astype(np.float32),
            "jacobian": np.concatenate(jacobians).astype(np.float32)}


def keypoints_path(keypoints_dir: str | os.PathLike, partition: str, clip_id: str) -> Path:
    """``{keypoints_dir}/{partition}/{clip_id}.npz``, refusing names that would leave the folder."""
    for part in (partition, clip_id):
        if not part or "/" in part or "\\" in part or part in (".", "..") or "\0" in part:
            raise FommError(f"unsafe partition or clip id {part!r} for a keypoint file name")
    return Path(keypoints_dir) / partition / f"{clip_id}.npz"


def save_clip_keypoints(path: str | os.PathLike, value: np.ndarray, jacobian: np.ndarray, fps: float,
                        fomm_sha256: str) -> None:
    """Write one clip's keypoints atomically (a killed stage never leaves half a file)."""
    value = np.asarray(value, dtype=np.float32)
    jacobian = np.asarray(jacobian, dtype=np.float32)
    if value.ndim != 3 or value.shape[-1] != 2 or jacobian.shape != value.shape + (2,):
        raise ValueError(f"expected value (F, K, 2) and jacobian (F, K, 2, 2), got {value.shape} and {jacobian.shape}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, value=value, jacobian=jacobian, fps=np.float32(fps), fomm_sha256=np.str_(fomm_sha256))


def load_clip_keypoints(path: str | os.PathLike) -> dict[str, np.ndarray | float | str]:
    """``{"value", "jacobian", "fps", "fomm_sha256"}`` of one clip, checked; FommError saying to rerun the stage.

    ``fomm_sha256`` is "" for files written before it was recorded.
    """
    path = Path(path)
    if not path.is_file():
        raise FommError(f"{path}: keypoint file not found; run the talker keypoint stage first")
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {key: npz[key] for key in ("value", "jacobian", "fps")}
            out["fomm_sha256"] = str(npz["fomm_sha256"]) if "fomm_sha256" in npz.files else ""
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise FommError(f"{path}: unreadable keypoint file ({exc}); delete it and rerun the keypoint stage") from None
    value, jacobian = out["value"], out["jacobian"]
    if value.ndim != 3 or value.shape[-1] != 2 or jacobian.shape != value.shape + (2,):
        raise FommError(f"{path}: keypoint arrays have shapes {value.shape} and {jacobian.shape}, "
                        "expected (F, K, 2) and (F, K, 2, 2); rerun the keypoint stage")
    return {"value": value.astype(np.float32), "jacobian": jacobian.astype(np.float32), "fps": float(out["fps"]),
            "fomm_sha256": out["fomm_sha256"]}
