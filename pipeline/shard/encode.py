"""Frame image encoding: lossless PNG (with a zlib level) or JPEG (with a quality).

PNG level 0 is stored uncompressed (deflate "stored" blocks), so its scanlines are written
unfiltered: a filter cannot make stored data smaller, and undoing it (OpenCV's default
adaptive filtering picks Paeth/Sub/Up per row) more than doubles the decode time
(measured: ~0.37 ms vs ~0.16 ms per 256x256 RGB frame; see bench/loader.py).
Levels 1..9 keep libpng's adaptive filters, which is what makes them smaller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from fomm_core.errors import FommError

# OpenCV >= 4.10 exposes the PNG row filter; older builds fall back to their default.
_PNG_FILTER = getattr(cv2, "IMWRITE_PNG_FILTER", None)
_PNG_FILTER_NONE = getattr(cv2, "IMWRITE_PNG_FILTER_NONE", None)


@dataclass(frozen=True)
class ImageCodec:
    """How frames are stored; ``encode`` takes BGR uint8 (H, W, 3) and returns file bytes."""

    image_format: str
    jpeg_quality: int = 95
    png_compression: int = 1

    def params(self) -> tuple[str, list[int]]:
        if self.image_format == "png":
            params = [cv2.IMWRITE_PNG_COMPRESSION, int(self.png_compression)]
            if int(self.png_compression) == 0 and _PNG_FILTER is not None and _PNG_FILTER_NONE is not None:
                params += [_PNG_FILTER, _PNG_FILTER_NONE]
            return ".png", params
        if self.image_format == "jpeg":
            return ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)]
        raise FommError(f"image_format {self.image_format!r}: expected png or jpeg")

    def encoder(self) -> Callable[[np.ndarray], bytes]:
        ext, params = self.params()

        def encode(frame: np.ndarray) -> bytes:
            ok, buf = cv2.imencode(ext, frame, params)
            if not ok:
                raise FommError(f"could not encode a {frame.shape} frame as {self.image_format}")
            return buf.tobytes()

        return encode
