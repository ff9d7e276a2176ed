"""The trained talker (with its FOMM renderer) as an MLflow pyfunc: a face image speaks the audio.

Input: ``{"image": (H, W, 3) uint8 RGB, "audio": (samples,) float32 mono at 16 kHz}``; the
image is resized (not face-cropped: pass a face crop, as ``fomm talk --crop-face`` would).
Output: ``(N, S, S, 3)`` uint8 frames at 25 fps, ``N = ceil(seconds * 25)``. Artifacts:
``talker`` (talker.pt) and ``fomm`` (the FOMM detector and generator it renders with).
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch

from fomm_core.audio import SAMPLE_RATE
from fomm_core.checkpoint import load_inference_models
from fomm_core.inference.animate import Animator, from_uint8_frames, to_uint8_frames
from fomm_core.talker import load_talker_checkpoint, speech_features, talk_keypoints

FPS = 25.0
DEFAULT_SIZE = 256


class TalkingHead(mlflow.pyfunc.PythonModel):
    # Inputs are checked against the logged tensor signature; MLflow's type-hint inference
    # (and its advice to add hints) does not cover a dict of arrays.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        self.talker = load_talker_checkpoint(context.artifacts["talker"], "cpu")
        models = load_inference_models(context.artifacts["fomm"], "cpu")
        self.kp_detector, self.generator = models.kp_detector, models.generator
        self.size = models.frame_size or DEFAULT_SIZE

    def predict(self, context, model_input, params=None) -> np.ndarray:
        import cv2

        image = np.asarray(model_input["image"], dtype=np.uint8)
        image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        speech = speech_features(np.asarray(model_input["audio"], np.float32), SAMPLE_RATE, FPS,
                                 self.talker.config.audio_per_frame, where="audio input")
        animator = Animator(self.kp_detector, self.generator, from_uint8_frames(image[None]))
        frames = []
        with torch.inference_mode():
            for kp in talk_keypoints(self.talker, animator.cache.kp, speech):
                frames.append(to_uint8_frames(animator.generate(kp)))
        return np.concatenate(frames)


mlflow.models.set_model(TalkingHead())
