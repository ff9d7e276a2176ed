"""Inference with a trained FOMM: animating an image (``fomm animate``) and evaluation.

``animate``: keypoint transfer and a batched animator that encodes the source once;
``video_io``: streaming ffmpeg reader/writer; ``face_crop``: optional automatic face crop;
``evaluate``: reconstruction metrics, copy baseline and landmark error (``fomm evaluate``).
"""

from .animate import Animator, movement_scale, transfer_keypoints
from .evaluate import evaluate_model

__all__ = ["Animator", "evaluate_model", "movement_scale", "transfer_keypoints"]
