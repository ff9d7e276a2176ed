"""Evaluation of a trained FOMM on held-out clips (the paper's video reconstruction).

For every test clip the first frame is the source and every frame drives it with its own
(absolute) keypoints; the prediction is compared with the real frame. The same metrics
for "copy the source frame" give the trivial baseline a useful model must beat. Frame 0
(the source itself) is left out of both, where the baseline would be exact.

Keypoint quality: on clips with synthetic ground truth, a ridge regression from the
learned keypoints to the true landmarks is fitted on training clips and scored on the
test clips (:func:`fomm_core.metrics.landmark_error`).

AKD/AED (the paper's 68-landmark distance in pixels and identity descriptor distance,
:mod:`fomm_core.faces.distances`) compare each generated frame with the real one, and the
source frame with the real one for the copy baseline, over frames where the face backend
finds a face on both sides; the detection rates say how many frames that is.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.datasets import ClipFramesDataset
from ..metrics import PSNR_CAP, l1_per_image, landmark_error, psnr_per_image, ssim_per_image
from ..models.generator import OcclusionAwareGenerator
from ..models.keypoint_detector import KeypointDetector
from .animate import Animator, fold_batchnorm, to_uint8_frames
from ..faces import FaceBackend
from ..faces.distances import FaceDistances, describe
from .video_io import VideoWriter

METRICS = ("l1", "psnr", "ssim")


@dataclass
class _Sums:
    """Running sums of per-frame metrics (pooled over all frames of all clips)."""

    frames: int = 0
    totals: dict = field(default_factory=lambda: {m: 0.0 for m in METRICS})

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.frames += len(pred)
        self.totals["l1"] += float(l1_per_image(pred, target).sum())
        self.totals["psnr"] += float(psnr_per_image(pred, target).sum())
        self.totals["ssim"] += float(ssim_per_image(pred, target).sum())

    def merge(self, other: "_Sums") -> None:
        self.frames += other.frames
        for m in METRICS:
            self.totals[m] += other.totals[m]

    def means(self, prefix: str = "") -> dict[str, float | None]:
        return {prefix + m: (self.totals[m] / self.frames if self.frames else None) for m in METRICS}


def video_name(clip_id: str) -> str:
    """A clip id as a safe file name (``#`` and anything unusual become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", clip_id) + ".mp4"


def _clip_keypoints(animator: Animator, dataset: ClipFramesDataset, clip_id: str, batch_size: int) -> np.ndarray:
    return np.concatenate([
        animator.keypoints(frames)["value"].float().cpu().numpy() for frames in dataset.iter_clip_frames(clip_id, batch_size)
    ])


def _gt_landmarks(dataset: ClipFramesDataset, clip, num_frames: int) -> np.ndarray | None:
    if not clip.has_groundtruth:
        return None
    gt = dataset.store.load_features(clip).get("gt_landmarks")
    if gt is None or len(gt) < num_frames:
        return None
    return np.asarray(gt[:num_frames], dtype=np.float64)


def evaluate_model(
    kp_detector: KeypointDetector,
    generator: OcclusionAwareGenerator,
    dataset: ClipFramesDataset,
    *,
    train_dataset: ClipFramesDataset | None = None,
    batch_size: int = 16,
    max_clips: int = 0,
    video_dir: Path | None = None,
    num_videos: int = 0,
    landmark_ridge: float = 1e-3,
    progress: Callable[[int], None] | None = None,
    face_backend: FaceBackend | None = None,
) -> dict[str, object]:
    """Reconstruction metrics, the copy-source baseline and the landmark error as a flat dict,
    plus ``per_clip``: one ``{"clip_id", "frames", "l1", "baseline_l1", "psnr", "ssim"}`` per clip.

    ``dataset`` holds the test clips, ``train_dataset`` the clips the landmark regression is
    fitted on (None: landmark error skipped). ``progress`` is called with the number of
    frames done after each batch. Videos (source | driving | prediction) of the first
    ``num_videos`` clips go to ``video_dir``. ``face_backend`` gives AKD/AED for the model
    and the copy baseline (``None``: left out, for tests of the rest).
    """
    clips = dataset.clips[:max_clips] if max_clips > 0 else list(dataset.clips)
    kp_detector, generator = fold_batchnorm(kp_detector), fold_batchnorm(generator)
    model, baseline = _Sums(), _Sums()
    faces, baseline_faces = FaceDistances(), FaceDistances()
    test_kp, test_gt = [], []
    per_clip = []
    videos = 0
    for clip in clips:
        kp_values = []
        clip_model, clip_baseline = _Sums(), _Sums()
        with contextlib.ExitStack() as stack:
            writer = None
            animator = None
            source = None
            source_face = None
            for frames in dataset.iter_clip_frames(clip.clip_id, batch_size):
                start = 0
                if animator is None:
                    start = 1  # frame 0 is the source itself: left out of the metrics
                    source = frames[:1]
                    animator = Animator(kp_detector, generator, source, relative=False, fold=False)
                    if video_dir is not None and videos < num_videos:
                        writer = stack.enter_context(VideoWriter(
                            video_dir / video_name(clip.clip_id), 3 * frames.shape[-1], frames.shape[-2],
                            clip.fps or 25.0))
                        videos += 1
                with torch.inference_mode():
                    kp = animator.keypoints(frames)
                    prediction = animator.generate(kp).cpu()
                kp_values.append(kp["value"].float().cpu().numpy())
                if len(frames) > start:
                    target = frames[start:]
                    clip_model.add(prediction[start:], target)
                    clip_baseline.add(source.expand_as(target), target)
                    if face_backend is not None:
                        if source_face is None:
                            source_face = describe(face_backend, list(to_uint8_frames(source)))[0]
                        real = describe(face_backend, list(to_uint8_frames(target)))
                        faces.add(describe(face_backend, list(to_uint8_frames(prediction[start:]))), real)
                        baseline_faces.add([source_face] * len(real), real)
                if writer is not None:
                    row = torch.cat([source.expand_as(frames), frames, prediction], dim=-1)
                    writer.write(to_uint8_frames(row))
                if progress is not None:
                    progress(len(frames))
        model.merge(clip_model)
        baseline.merge(clip_baseline)
        if clip_model.frames:
            per_clip.append({"clip_id": clip.clip_id, "frames": clip_model.frames, **clip_model.means(),
                             "baseline_l1": clip_baseline.means()["l1"]})
        if kp_values:
            values = np.concatenate(kp_values)
            gt = _gt_landmarks(dataset, clip, len(values))
            if gt is not None:
                test_kp.append(values)
                test_gt.append(gt)

    result: dict[str, object] = {"num_clips": len(clips), "num_frames": model.frames, "psnr_cap_db": PSNR_CAP}
    result.update(model.means())
    result.update(baseline.means("baseline_"))
    result.update(_landmark_metric(kp_detector, generator, train_dataset, test_kp, test_gt, batch_size,
                                   landmark_ridge, progress))
    if face_backend is not None:
        result.update(faces.results())
        baseline = baseline_faces.results("baseline_")
        result.update({k: baseline[k] for k in ("baseline_akd", "baseline_aed")})
        result["face_backend"] = face_backend.name
    result["per_clip"] = per_clip
    return result


def _landmark_metric(kp_detector, generator, train_dataset, test_kp, test_gt, batch_size, ridge, progress) -> dict:
    if not test_kp:
        return {"landmark_error": None, "landmark_error_skipped": "no test clips with ground-truth landmarks"}
    if train_dataset is None:
        return {"landmark_error": None, "landmark_error_skipped": "no training clips given"}
    train_kp, train_gt = [], []
    animator = None
    for clip in train_dataset.clips:
        if not clip.has_groundtruth:
            continue
        if animator is None:
            first = next(train_dataset.iter_clip_frames(clip.clip_id, 1))
            animator = Animator(kp_detector, generator, first, relative=False, fold=False)
        values = _clip_keypoints(animator, train_dataset, clip.clip_id, batch_size)
        if progress is not None:
            progress(len(values))
        gt = _gt_landmarks(train_dataset, clip, len(values))
        if gt is not None:
            train_kp.append(values)
            train_gt.append(gt)
    if not train_kp:
        return {"landmark_error": None, "landmark_error_skipped": "no training clips with ground-truth landmarks"}
    error = landmark_error(np.concatenate(train_kp), np.concatenate(train_gt), np.concatenate(test_kp),
                           np.concatenate(test_gt), ridge)
    return {"landmark_error": None if math.isnan(error) else error}
