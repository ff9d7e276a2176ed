"""What makes one synthetic person look unlike another: colours, proportions, hair, voice.

An identity is drawn once from its own random stream, so every video of that person shows
the same face and speaks with the same voice, while backgrounds change per video.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# BGR colours (OpenCV order), picked to be clearly apart from the near-black inner mouth.
SKIN_TONES = [
    (189, 214, 245), (160, 190, 235), (130, 170, 222), (120, 160, 205), (95, 135, 190),
    (80, 118, 172), (70, 105, 150), (150, 182, 225), (110, 150, 200), (175, 200, 240),
]
HAIR_COLOURS = [
    (20, 20, 25), (25, 40, 65), (35, 60, 100), (80, 140, 190), (30, 60, 150),
    (160, 160, 165), (55, 85, 120), (15, 25, 40),
]
IRIS_COLOURS = [(90, 60, 30), (40, 70, 110), (150, 110, 50), (80, 120, 70), (60, 60, 60), (30, 45, 70)]
CLOTHES = [
    (120, 60, 30), (40, 40, 40), (60, 120, 40), (30, 30, 140), (150, 150, 150),
    (110, 80, 120), (40, 100, 160), (90, 40, 20),
]
HAIR_STYLES = ("short", "long", "curly", "bald")


@dataclass(frozen=True)
class FaceStyle:
    """Proportions are in face units (face oval half-height = 1), colours BGR 0..255."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    brows: tuple[int, int, int]
    clothes: tuple[int, int, int]
    hair_style: str
    face_width: float  # oval half-width
    chin_taper: float  # how much the lower half narrows
    eye_dx: float  # eye centre distance from the midline
    eye_y: float
    eye_w: float  # eye half-width
    eye_h: float  # eye half-height (open)
    iris_r: float
    brow_lift: float
    brow_thick: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float  # half-width
    lip_thick: float
    f0: float  # voice pitch, Hz
    formant_shift: float  # vocal tract length factor


def _pick(rng: np.random.Generator, palette: list, jitter: int) -> tuple[int, int, int]:
    base = np.array(palette[rng.integers(len(palette))], dtype=float)
    colour = np.clip(base + rng.uniform(-jitter, jitter, 3), 0, 255)
    return tuple(int(c) for c in colour)


def make_style(rng: np.random.Generator, identity: int) -> FaceStyle:
    """A distinct face; skin tone and hair cycle through the palettes so neighbours differ."""
    skin_base = np.array(SKIN_TONES[(identity * 3 + int(rng.integers(2))) % len(SKIN_TONES)], float)
    skin = tuple(int(c) for c in np.clip(skin_base + rng.uniform(-8, 8, 3), 0, 255))
    hair_base = np.array(HAIR_COLOURS[(identity * 5 + int(rng.integers(2))) % len(HAIR_COLOURS)], float)
    hair = tuple(int(c) for c in np.clip(hair_base + rng.uniform(-10, 10, 3), 0, 255))
    lips = tuple(int(c) for c in np.clip(np.array(skin) * np.array([0.72, 0.68, 0.95]) + [0, 0, 10], 0, 255))
    brows = tuple(int(c) for c in np.clip(np.array(hair) * 0.8, 0, 255))
    female = bool(rng.random() < 0.5)
    face_width = float(rng.uniform(0.68, 0.84))
    eye_w = float(rng.uniform(0.15, 0.19))
    # keep the outer eye corner well inside the oval, also when the head turns
    eye_dx = min(float(rng.uniform(0.30, 0.38)), 0.8 * face_width - eye_w)
    return FaceStyle(
        skin=skin,
        hair=hair,
        iris=_pick(rng, IRIS_COLOURS, 15),
        lips=lips,
        brows=brows,
        clothes=_pick(rng, CLOTHES, 20),
        hair_style=HAIR_STYLES[(identity + int(rng.integers(len(HAIR_STYLES)))) % len(HAIR_STYLES)],
        face_width=face_width,
        chin_taper=float(rng.uniform(0.15, 0.4)),
        eye_dx=eye_dx,
        eye_y=float(rng.uniform(-0.22, -0.12)),
        eye_w=eye_w,
        eye_h=float(rng.uniform(0.07, 0.09)),
        iris_r=float(rng.uniform(0.065, 0.078)),
        brow_lift=float(rng.uniform(0.13, 0.19)),
        brow_thick=float(rng.uniform(0.035, 0.06)),
        nose_y=float(rng.uniform(0.18, 0.26)),
        nose_w=float(rng.uniform(0.09, 0.13)),
        mouth_y=float(rng.uniform(0.50, 0.58)),
        mouth_w=float(rng.uniform(0.20, 0.27)),
        lip_thick=float(rng.uniform(0.035, 0.055)),
        f0=float(rng.uniform(175, 230) if female else rng.uniform(95, 140)),
        formant_shift=float(rng.uniform(1.05, 1.18) if female else rng.uniform(0.9, 1.02)),
    )


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured backdrop (uint8 BGR, height x width): gradient, blurry blobs, fine grain."""
    c1 = rng.uniform(30, 230, 3)
    c2 = rng.uniform(30, 230, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    # two octaves of smoothed noise give large soft structures and mid-size texture; mostly
    # brightness, with a little colour, like a real out-of-focus room
    for cells, amplitude in ((4, 30.0), (14, 12.0)):
        shape = (cells, max(2, cells * width // height))
        lum = rng.normal(0, 1, (*shape, 1)).astype(np.float32)
        tint = 0.35 * rng.normal(0, 1, (*shape, 3)).astype(np.float32)
        coarse = cv2.resize(lum + tint, (width, height), interpolation=cv2.INTER_CUBIC)
        image += amplitude * coarse
    # a few soft rectangles (shelves, windows) so the scene is not a plain gradient
    for _ in range(int(rng.integers(2, 5))):
        x0, y0 = int(rng.uniform(0, width * 0.9)), int(rng.uniform(0, height * 0.9))
        w, h = int(rng.uniform(0.08, 0.3) * width), int(rng.uniform(0.05, 0.3) * height)
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), tuple(float(c) for c in rng.uniform(20, 235, 3)), -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    image += rng.normal(0, 3.0, (height, width, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
