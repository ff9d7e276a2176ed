"""Frame image encoding: lossless PNG (with a zlib level) or JPEG (with a quality)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from fomm_core.errors import FommError


@dataclass(frozen=True)
class ImageCodec:
    """How frames are stored; ``encode`` takes BGR uint8 (H, W, 3) and returns file bytes."""

    image_format: str
    jpeg_quality: int = 95
    png_compression: int = 1

    def params(self) -> tuple[str, list[int]]:
        if self.image_format == "png":
            return ".png", [cv2.IMWRITE_PNG_COMPRESSION, int(self.png_compression)]
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
