"""Frame image encoding for the shards: JPEG (default), lossless PNG, or WebP.

JPEG through OpenCV's libjpeg-turbo decodes fastest of the lossy codecs measured
(``bench/shard_codecs.py``); 4:4:4 sampling keeps the chroma detail 4:2:0 would halve.
PNG level 0 is stored uncompressed (deflate "stored" blocks), so its scanlines are written
unfiltered: a filter cannot make stored data smaller, and undoing it more than doubles the
decode time. Levels 1..9 keep libpng's adaptive filters, which is what makes them smaller.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from fomm_core.errors import FommError

from .config import ShardConfig

# OpenCV >= 4.10 exposes the PNG row filter; older builds fall back to their default.
_PNG_FILTER = getattr(cv2, "IMWRITE_PNG_FILTER", None)
_PNG_FILTER_NONE = getattr(cv2, "IMWRITE_PNG_FILTER_NONE", None)
_JPEG_SAMPLING = {444: getattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR_444", None),
                  420: getattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR_420", None)}


def imencode_args(config: ShardConfig) -> tuple[str, list[int]]:
    """``(extension, params)`` for ``cv2.imencode``."""
    if config.image_format == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(config.png_compression)]
        if int(config.png_compression) == 0 and _PNG_FILTER is not None and _PNG_FILTER_NONE is not None:
            params += [_PNG_FILTER, _PNG_FILTER_NONE]
        return ".png", params
    if config.image_format == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(config.jpeg_quality)]
        sampling = _JPEG_SAMPLING.get(int(config.jpeg_subsampling))
        if sampling is not None:  # OpenCV < 4.7 always writes 4:2:0
            params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
        return ".jpg", params
    if config.image_format == "webp":
        return ".webp", [cv2.IMWRITE_WEBP_QUALITY, int(config.webp_quality)]
    raise FommError(f"image_format {config.image_format!r}: expected jpeg, png or webp")


def encoder(config: ShardConfig) -> Callable[[np.ndarray], bytes]:
    """A function from a BGR uint8 (H, W, 3) frame to its encoded bytes."""
    ext, params = imencode_args(config)

    def encode(frame: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(ext, frame, params)
        if not ok:
            raise FommError(f"could not encode a {frame.shape} frame as {config.image_format}")
        return buf.tobytes()

    return encode
