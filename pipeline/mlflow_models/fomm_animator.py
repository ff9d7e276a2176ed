"""The trained FOMM as an MLflow pyfunc: a source image animated by driving frames.

Input: ``{"source": (H, W, 3) uint8, "driving": (N, H', W', 3) uint8}`` (RGB, any sizes:
resized to the resolution the checkpoint was trained at). Output: ``(N, S, S, 3)`` uint8
frames. Params: ``relative`` (motion relative to the first driving frame, as ``fomm
animate``) and ``adapt_scale``. The checkpoint is the model's ``checkpoint`` artifact.
"""

from __future__ import annotations

import cv2
import mlflow
import numpy as np
import torch

from fomm_core.checkpoint import load_inference_models
from fomm_core.inference.animate import Animator, from_uint8_frames, to_uint8_frames

DEFAULT_SIZE = 256  # checkpoints that do not say what resolution they were trained at


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 to (N, size, size, 3): area filtering down, bicubic up."""
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.shape[1:3] == (size, size):
        return frames
    shrink = frames.shape[1] >= size and frames.shape[2] >= size
    method = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size, size), interpolation=method) for f in frames])


class FommAnimator(mlflow.pyfunc.PythonModel):
    # Inputs are checked against the logged tensor signature; MLflow's type-hint inference
    # (and its advice to add hints) does not cover a dict of arrays.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        models = load_inference_models(context.artifacts["checkpoint"], "cpu")
        self.kp_detector, self.generator = models.kp_detector, models.generator
        self.size = models.frame_size or DEFAULT_SIZE

    def predict(self, context, model_input, params=None) -> np.ndarray:
        params = params or {}
        source = resize_frames(np.asarray(model_input["source"])[None], self.size)
        driving = resize_frames(np.asarray(model_input["driving"]), self.size)
        animator = Animator(self.kp_detector, self.generator, from_uint8_frames(source),
                            relative=bool(params.get("relative", True)), adapt_scale=bool(params.get("adapt_scale", True)))
        with torch.inference_mode():
            return to_uint8_frames(animator(from_uint8_frames(driving)))


mlflow.models.set_model(FommAnimator())
