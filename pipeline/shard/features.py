"""Per-clip feature NPZ: 16 kHz audio, log-mel at 100 Hz, and synthetic ground truth.

NPZ files are written with fixed zip timestamps (``np.savez`` stamps the current time),
so the same input gives byte-identical files.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomm_core import audio
from fomm_core.atomic import atomic_path
from fomm_core.errors import FommError

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
METADATA_FPS = 25.0
DEFAULT_LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
DEFAULT_POSE_NAMES = ("tx", "ty", "roll", "scale", "yaw")
# Frames a crop may have beyond the ground truth (rounding at a video's end) before it is an error.
GT_END_SLACK = 2


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez`` (loadable by ``np.load``) but reproducible byte for byte."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())


def audio_features(wav: Path | None, length: int | None = None, slack: int = 0,
                   where: str = "") -> dict[str, np.ndarray]:
    """Audio resampled to 16 kHz mono and its log-mel features; empty arrays without audio.

    With ``length``, the audio is cut to exactly that many samples (the video's duration), so
    feature frames ``4k..4k+3`` always exist for video frame ``k``. Audio shorter than that by
    more than ``slack`` samples (one video frame) is an error naming ``where``: zero-padding
    would teach the talker silence for speech. Less is padded (rounding at the clip's end).
    """
    if wav is None:
        samples = np.zeros(0, dtype=np.float32)
    else:
        with warnings.catch_warnings(record=True) as caught:  # scipy warns on truncated files
            warnings.simplefilter("always")
            samples, rate = audio.read_wav(wav)
        if rate != audio.SAMPLE_RATE:
            samples = audio.resample(samples, rate, audio.SAMPLE_RATE)
        if length is not None and len(samples) < length - slack:
            hint = f" ({caught[0].message})" if caught else ""
            raise FommError(
                f"{where}: audio {wav} has {len(samples) / audio.SAMPLE_RATE:.2f} s{hint} but the clip's frames "
                f"need {length / audio.SAMPLE_RATE:.2f} s; re-crop it (fomm crop) or remove it from the manifest")
        if length is not None and len(samples) != length:
            samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    return {
        "audio": samples,
        "sample_rate": np.int32(audio.SAMPLE_RATE),
        "logmel": audio.log_mel(samples, audio.SAMPLE_RATE),
        "logmel_rate": np.float32(audio.FEATURE_RATE),
    }


@dataclass(frozen=True)
class CropGeometry:
    """What maps source-video pixels to crop pixels for one clip (from the crop manifest)."""

    start: int
    fps: float
    crop_left: float
    crop_top: float
    crop_right: float
    crop_bottom: float
    src_width: float
    src_height: float
    out_width: int
    out_height: int


class GroundTruthSource:
    """Loads ``{video_id}.npz`` from the synth ground-truth folder, a few videos cached."""

    def __init__(self, directory: Path, cache_size: int = 4):
        self.directory = Path(directory)
        self._cache: OrderedDict[str, dict[str, np.ndarray] | None] = OrderedDict()
        self._cache_size = cache_size

    def load(self, video_id: str) -> dict[str, np.ndarray] | None:
        if video_id in self._cache:
            self._cache.move_to_end(video_id)
            return self._cache[video_id]
        path = self.directory / f"{video_id}.npz"  # video_id is validated by the caller
        data = None
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as npz:
                    data = {key: npz[key] for key in npz.files}
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise FommError(f"{path}: not a readable ground-truth npz ({exc}); rerun fomm synth") from None
            for key in ("landmarks", "mouth_open", "blink", "pose", "width", "height", "fps"):
                if key not in data:
                    raise FommError(f"{path}: ground-truth npz lacks {key!r}; rerun fomm synth")
        self._cache[video_id] = data
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data


def map_groundtruth(gt: dict[str, np.ndarray], geo: CropGeometry, num_frames: int,
                    where: str) -> dict[str, np.ndarray]:
    """Slice the clip's frames out of a video's ground truth and map points into the crop.

    ``x' = (x * src_width / gt_width - crop_left) / (crop_right - crop_left) * out_width``
    (same for y); the pose's ``tx, ty`` are mapped the same way, the rest is unchanged.
    """
    gt_w, gt_h, gt_fps = float(gt["width"]), float(gt["height"]), float(gt["fps"])
    n_gt = len(gt["landmarks"])
    clip_fps = geo.fps if geo.fps > 0 else METADATA_FPS
    idx = np.rint(geo.start * gt_fps / METADATA_FPS + np.arange(num_frames) * gt_fps / clip_fps).astype(np.int64)
    if num_frames and idx[-1] >= n_gt + GT_END_SLACK:
        raise FommError(f"{where}: needs ground-truth frame {idx[-1]} but the video has {n_gt}; "
                        "is --groundtruth the synth output these clips were made from?")
    idx = np.minimum(idx, n_gt - 1)
    box = (geo.crop_left, geo.crop_top, geo.crop_right, geo.crop_bottom, geo.src_width, geo.src_height)
    if (not np.all(np.isfinite(box)) or geo.crop_right <= geo.crop_left
            or geo.crop_bottom <= geo.crop_top or gt_w <= 0 or gt_h <= 0):
        raise FommError(f"{where}: empty crop box or ground-truth size; rerun fomm crop")

    def to_crop(points: np.ndarray) -> np.ndarray:
        x = (points[..., 0] * (geo.src_width / gt_w) - geo.crop_left) / (geo.crop_right - geo.crop_left)
        y = (points[..., 1] * (geo.src_height / gt_h) - geo.crop_top) / (geo.crop_bottom - geo.crop_top)
        return np.stack([x * geo.out_width, y * geo.out_height], axis=-1).astype(np.float32)

    pose = np.array(gt["pose"][idx], dtype=np.float32)
    pose[:, 0:2] = to_crop(pose[:, 0:2])
    names = gt.get("landmark_names", np.array(DEFAULT_LANDMARK_NAMES))
    pose_names = gt.get("pose_names", np.array(DEFAULT_POSE_NAMES))
    return {
        "gt_landmarks": to_crop(np.asarray(gt["landmarks"], dtype=np.float64)[idx]),
        "gt_mouth_open": np.asarray(gt["mouth_open"][idx], dtype=np.float32),
        "gt_blink": np.asarray(gt["blink"][idx], dtype=np.float32),
        "gt_pose": pose,
        "gt_landmark_names": np.asarray(names).astype(str),
        "gt_pose_names": np.asarray(pose_names).astype(str),
    }
