"""Drawing one frame of a synthetic talking head, and where its landmarks are.

The face is a set of polygons in *face units* (origin at the face centre, y down, oval
half-height 1). Each polygon carries a depth: a head pose maps it to pixels with one affine
transform (translate, scale, roll, horizontal squash for yaw plus a depth-dependent
sideways shift, so the nose turns further than the cheeks). Landmarks go through exactly
the same transform, so ground truth is where the pixels are. Pixel centres sit at integer
coordinates (OpenCV's convention): landmark (x, y) is pixel ``image[round(y), round(x)]``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .identity import FaceStyle

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
UNIT_OF_HEIGHT = 0.2  # face oval half-height in pixels = 0.2 * frame height * pose scale
YAW_SQUASH = 0.22  # horizontal squash at |yaw| = 1
YAW_SHIFT = 0.05  # sideways shift (face units per unit depth) at |yaw| = 1
MAX_MOUTH_OPEN = 0.22  # inner mouth height in face units at mouth_open = 1
SUBPIXEL_BITS = 4

INNER_MOUTH = (30, 20, 55)
TEETH = (215, 225, 232)
SCLERA = (232, 236, 240)
PUPIL = (12, 12, 14)
LASHES = (35, 30, 30)

_PHI = np.linspace(0.0, np.pi, 25)
_CIRCLE = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)


def pose_matrix(pose: np.ndarray, depth: float, frame_height: int) -> np.ndarray:
    """2x3 affine from face units at ``depth`` to pixels for pose ``tx, ty, roll, scale, yaw``."""
    tx, ty, roll, scale, yaw = (float(v) for v in pose)
    unit = UNIT_OF_HEIGHT * frame_height * scale
    c, s = np.cos(roll), np.sin(roll)
    squash = 1.0 - YAW_SQUASH * abs(yaw)
    shift = YAW_SHIFT * yaw * depth
    # pixels = T + unit * R @ (squash * x + shift, y)
    a = unit * np.array([[c * squash, -s], [s * squash, c]])
    offset = np.array([tx, ty]) + unit * np.array([c * shift, s * shift])
    return np.hstack([a, offset[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return np.stack([cx + rx * np.cos(_CIRCLE), cy + ry * np.sin(_CIRCLE)], axis=1)


def _band(x: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """The polygon between two curves over the same x: along ``top``, back along ``bottom``."""
    return np.vstack([np.stack([x, top], 1), np.stack([x, bottom], 1)[::-1]])


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in colour)


class FaceModel:
    """The polygons of one identity's face, ready to be posed and drawn frame after frame."""

    def __init__(self, style: FaceStyle, frame_height: int):
        self.style = style
        self.frame_height = frame_height
        st = style
        fw = st.face_width
        theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        lower = np.clip(np.sin(theta), 0, None)
        self.face = np.stack([fw * np.cos(theta) * (1 - st.chin_taper * lower**2), np.sin(theta)], axis=1)
        self.ears = [_ellipse(side * (fw - 0.03), -0.05, 0.1, 0.17) for side in (-1, 1)]
        self.neck = np.array([[-0.36 * fw, 0.5], [0.36 * fw, 0.5], [0.42 * fw, 1.6], [-0.42 * fw, 1.6]])
        self.torso = _ellipse(0.0, 2.3, 2.0, 1.05)
        self.hair_back: np.ndarray | None = None
        self.hair_cap: list[np.ndarray] = []
        self._build_hair(theta)
        self.brows = [self._brow(side) for side in (-1, 1)]
        # the face box covers everything that is head: oval, ears, hair
        self._box_parts = [(self.face, 0.0)] + [(ear, -0.6) for ear in self.ears]
        self._box_parts += [(cap, 0.1) for cap in self.hair_cap]
        if self.hair_back is not None:
            self._box_parts.append((self.hair_back, -0.4))

    def _build_hair(self, theta: np.ndarray) -> None:
        st = self.style
        fw = st.face_width
        if st.hair_style == "bald":
            self.hair_cap = [_ellipse(side * fw * 0.93, -0.28, 0.11, 0.24) for side in (-1, 1)]
            return
        bumps = 0.06 * np.abs(np.sin(7 * theta)) if st.hair_style == "curly" else 0.0
        arc = np.linspace(np.pi + 0.28, 2 * np.pi - 0.28, 40)
        bump_arc = 0.06 * np.abs(np.sin(7 * arc)) if st.hair_style == "curly" else 0.0
        outer = np.stack([(fw * 1.07 + bump_arc) * np.cos(arc), -0.02 + (1.13 + bump_arc) * np.sin(arc)], 1)
        xs = np.linspace(outer[-1, 0], outer[0, 0], 30)
        hairline = np.stack([xs, -0.64 + 0.3 * (xs / fw) ** 2 + 0.025 * np.sin(xs * 23)], axis=1)
        self.hair_cap = [np.vstack([outer, hairline])]
        if st.hair_style in ("long", "curly"):
            rx = fw + (0.3 if st.hair_style == "long" else 0.38)
            top = np.stack([(rx + bumps) * np.cos(theta), -0.05 + (1.2 + bumps) * np.sin(theta)], axis=1)
            upper = top[np.sin(theta) <= 0]
            bottom_y = 1.25 if st.hair_style == "long" else 0.55
            order = np.argsort(np.arctan2(upper[:, 1], upper[:, 0]))
            upper = upper[order]  # from the left side over the top to the right side
            self.hair_back = np.vstack([upper, [[upper[-1, 0], bottom_y], [upper[0, 0], bottom_y]]])

    def _brow(self, side: int) -> np.ndarray:
        st = self.style
        cx, cy = side * st.eye_dx, st.eye_y - st.brow_lift
        u = np.linspace(-1, 1, 15)
        x = cx + u * st.eye_w * 1.25
        arch = cy - 0.04 * (1 - u**2) + side * 0.012 * u
        half = st.brow_thick * 0.5 * (1 - 0.5 * ((u * side + 1) / 2))  # thicker towards the nose
        return np.vstack([np.stack([x, arch - half], 1), np.stack([x, arch + half], 1)[::-1]])

    # ---------------------------------------------------------------------------------------

    def landmarks(self, pose: np.ndarray, mouth_open: float) -> np.ndarray:
        """(5, 2) pixel positions: eye centres, nose tip, mouth corners (as drawn)."""
        st = self.style
        feat = pose_matrix(pose, 1.0, self.frame_height)
        nose = pose_matrix(pose, 1.5, self.frame_height)
        mw = self.mouth_corners(mouth_open)
        points = apply(feat, np.array([[-st.eye_dx, st.eye_y], [st.eye_dx, st.eye_y], [0, 0],
                                       [-mw, st.mouth_y], [mw, st.mouth_y]]))
        points[2] = apply(nose, np.array([[0.0, st.nose_y]]))[0]
        return points

    def mouth_corners(self, mouth_open: float) -> float:
        """Half-width of the mouth: it narrows a little as it opens."""
        return self.style.mouth_w * (1 - 0.12 * mouth_open)

    def face_box(self, pose: np.ndarray) -> np.ndarray:
        """``left, top, right, bottom`` pixels of the head (oval, ears, hair) in this pose."""
        pts = np.vstack([apply(pose_matrix(pose, d, self.frame_height), p) for p, d in self._box_parts])
        return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])

    def draw(self, image: np.ndarray, pose: np.ndarray, blink: float, mouth_open: float) -> None:
        """Paint the head onto ``image`` (uint8 BGR, modified in place)."""
        st = self.style
        h = self.frame_height

        def fill(points: np.ndarray, depth: float, colour) -> None:
            px = apply(pose_matrix(pose, depth, h), points)
            cv2.fillPoly(image, [np.round(px * (1 << SUBPIXEL_BITS)).astype(np.int32)], colour,
                         lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)

        fill(self.torso, -0.5, st.clothes)
        fill(self.neck, -0.3, _shade(st.skin, 0.82))
        if self.hair_back is not None:
            fill(self.hair_back, -0.4, _shade(st.hair, 0.85))
        for ear in self.ears:
            fill(ear, -0.6, _shade(st.skin, 0.9))
        fill(self.face, 0.0, st.skin)
        for cap in self.hair_cap:
            fill(cap, 0.1, st.hair)
        for side in (-1, 1):
            self._draw_eye(fill, side, blink)
        for brow in self.brows:
            fill(brow, 1.0, st.brows)
        self._draw_nose(fill)
        self._draw_mouth(fill, mouth_open)

    def _draw_eye(self, fill, side: int, blink: float) -> None:
        st = self.style
        ex, ey, ew, eh = side * st.eye_dx, st.eye_y, st.eye_w, st.eye_h
        x = ex - ew * np.cos(_PHI)
        upper = ey - eh * np.sin(_PHI)
        lower = ey + 0.8 * eh * np.sin(_PHI)
        lid = upper * (1 - blink) + lower * blink
        fill(_band(x, upper, lower), 1.0, SCLERA)
        fill(_ellipse(ex, ey, st.iris_r, st.iris_r), 1.0, st.iris)
        fill(_ellipse(ex, ey, 0.42 * st.iris_r, 0.42 * st.iris_r), 1.0, PUPIL)
        left, right = ex - ew, ex + ew
        top, bottom = ey - eh * 1.6, ey + eh * 1.6
        # eyelids: skin above the lid line and below the lower rim hides the iris outside the opening
        for edge, rim in ((top, lid), (bottom, lower)):
            corners = [[left, ey], [left, edge], [right, edge], [right, ey]]
            fill(np.vstack([corners, np.stack([x, rim], 1)[::-1]]), 1.0, st.skin)
        lash = 0.012 + 0.01 * np.sin(_PHI)
        fill(_band(x, lid + 0.004, lid - lash), 1.0, LASHES)

    def _draw_nose(self, fill) -> None:
        st = self.style
        ny, nw = st.nose_y, st.nose_w
        top = st.eye_y + 0.06
        bridge = np.array([[0.015, top], [0.04, top], [0.6 * nw, ny - 0.03], [0.3 * nw, ny - 0.03]])
        fill(bridge, 1.25, _shade(st.skin, 0.86))
        fill(_ellipse(0.0, ny, nw, 0.055), 1.5, _shade(st.skin, 0.85))
        fill(_ellipse(0.0, ny - 0.025, 0.55 * nw, 0.04), 1.5, _shade(st.skin, 1.04))
        for side in (-1, 1):
            fill(_ellipse(side * 0.45 * nw, ny + 0.02, 0.028, 0.016), 1.5, _shade(st.skin, 0.45))

    def _draw_mouth(self, fill, mouth_open: float) -> None:
        st = self.style
        my = st.mouth_y
        mw = self.mouth_corners(mouth_open)
        gap = MAX_MOUTH_OPEN * float(np.clip(mouth_open, 0.0, 1.0))
        x = -mw * np.cos(_PHI)
        s = np.sin(_PHI)
        inner_up = my - (0.45 * gap + 0.004) * s
        inner_lo = my + (0.55 * gap + 0.004) * s
        taper = s**0.6
        outer_up = inner_up - st.lip_thick * taper * (1 + 0.15 * np.cos(6 * _PHI) * s)
        outer_lo = inner_lo + 1.2 * st.lip_thick * taper
        fill(_band(x, outer_up, outer_lo), 1.0, st.lips)
        # a shut mouth is only a shadow between the lips; it darkens to the inner mouth as it opens
        dark = min(1.0, gap / 0.03)
        inner = tuple(int(round(l * 0.6 * (1 - dark) + m * dark)) for l, m in zip(st.lips, INNER_MOUTH))
        fill(_band(x, inner_up, inner_lo), 1.0, inner)
        if gap > 0.02:
            teeth = inner_up + min(0.18 * gap, 0.025) * s
            fill(_band(x * 0.8, inner_up, teeth), 1.0, TEETH)
