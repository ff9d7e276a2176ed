"""fomm_core.faces on real images: the dlib backend, AKD/AED, the crop layout, face tubes.

Faces are astronaut.png (a real photo) and this project's synthetic heads drawn at known
places. Detection runs for real (dlib HOG); nothing is mocked.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fomm_core.errors import FommError
from fomm_core.faces import DlibBackend, iou
from fomm_core.faces.distances import FaceDistances, describe, mouth_opening
from fomm_core.faces.layout import FaceLayout, landmark_box, smooth_squares
from fomm_core.faces.tubes import TOO_SHORT, TOO_SMALL, TubeSettings, find_tubes
from fomm_core.inference.face_crop import image_crop_box
from fomm_core.inference.video_io import read_image

from _face_helpers import ASTRONAUT, draw

W, H = 640, 360  # HOG finds faces of 80 px and more: the synthetic heads are 100-250 px here


@pytest.fixture(scope="module")
def backend():
    return DlibBackend()


@pytest.fixture(scope="module")
def astronaut():
    return read_image(ASTRONAUT)


def test_astronaut_face_is_found_with_68_landmarks_and_a_descriptor(backend, astronaut):
    [face] = describe(backend, [astronaut])
    assert len(face) == 1  # the subject only (a weak second detection on the suit is dropped)
    left, top, right, bottom = face.boxes[0]
    assert 150 < (left + right) / 2 < 300 and 60 < (top + bottom) / 2 < 200  # her face, upper middle
    assert face.landmarks.shape == (1, 68, 2) and face.descriptors.shape == (1, 128)
    eyes = face.landmarks[0, 36:48].mean(0)
    assert left < eyes[0] < right and top < eyes[1] < bottom
    assert np.isfinite(face.descriptors).all() and np.linalg.norm(face.descriptors[0]) > 0.5


def test_astronaut_crop_frames_the_face_like_the_training_clips(backend, astronaut):
    box = image_crop_box(astronaut, "astronaut.jpg", backend)
    left, top, right, bottom = box
    assert right - left == bottom - top and 0 <= left and right <= 512 and 0 <= top and bottom <= 512
    crop = cv2.resize(astronaut[top:bottom, left:right], (256, 256), interpolation=cv2.INTER_AREA)
    [face] = describe(backend, [crop], descriptors=False)
    marks = landmark_box(face.landmarks[0])
    layout = FaceLayout()
    assert max(marks[2] - marks[0], marks[3] - marks[1]) / 256 == pytest.approx(1 / layout.side, abs=0.05)
    assert ((marks[1] + marks[3]) / 2 - 128) / 256 == pytest.approx(layout.centre_dy, abs=0.05)


def test_no_face_is_a_clear_error(backend):
    grey = np.full((120, 200, 3), 128, np.uint8)
    assert len(backend.detect([grey])[0]) == 0
    with pytest.raises(FommError, match="grey.png: no face found"):
        image_crop_box(grey, "grey.png", backend)


def test_small_frames_are_upsampled_so_64px_crops_work(backend, astronaut):
    small = cv2.resize(astronaut[60:200, 150:290], (64, 64), interpolation=cv2.INTER_AREA)
    assert len(backend.detect([small])[0]) == 1


def shifted(image: np.ndarray, dx: float) -> np.ndarray:
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, 0]]), image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def test_akd_aed_are_zero_for_identical_frames_and_akd_follows_known_shifts(backend, astronaut):
    real = describe(backend, [astronaut])
    same = FaceDistances()
    same.add(real, real)
    assert same.results()["akd"] == 0 and same.results()["aed"] == 0 and same.results()["face_pairs_rate"] == 1
    akd = []
    for dx in (3, 6, 12):
        moved = FaceDistances()
        moved.add(describe(backend, [shifted(astronaut, dx)]), real)
        akd.append(moved.results()["akd"])
        assert moved.results()["akd"] == pytest.approx(dx, abs=1.5), dx  # the landmarks move with the image
        assert moved.results()["aed"] < 0.3  # the same person
    assert akd == sorted(akd)
    other = FaceDistances()
    other.add(describe(backend, [draw(W, H, [(3, 320, 170, 1.1)])]), real)
    assert other.results()["aed"] > 0.5  # another identity (a drawn face) is far away


def test_distance_bookkeeping_counts_frames_without_faces():
    from fomm_core.faces.backend import FaceFrame

    marks = np.zeros((1, 68, 2))
    face = FaceFrame(np.array([[0, 0, 10, 10.0]]), np.ones(1), marks, np.zeros((1, 2)))
    moved = FaceFrame(face.boxes, face.scores, marks + [3.0, 4.0], np.array([[3.0, 4.0]]))
    none = FaceFrame(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 68, 2)), np.zeros((0, 2)))
    d = FaceDistances()
    d.add([moved, none, face], [face, face, none])
    assert d.results() == {"akd": 5.0, "aed": 5.0, "face_detection_rate": 2 / 3, "face_pairs_rate": 1 / 3,
                           "generated_face_rate": 2 / 3}


def test_mouth_opening_grows_with_the_lip_gap(backend):
    gaps = []
    for mouth in (0.0, 0.5, 1.0):
        [face] = describe(backend, [draw(W, H, [(2, 320, 180, 1.2)], mouth_open=mouth)], descriptors=False)
        gaps.append(float(mouth_opening(face.landmarks[0])))
    assert gaps[0] < gaps[1] < gaps[2] and gaps[2] - gaps[0] > 0.1


def test_smoothing_interpolates_and_removes_jitter():
    frames = np.arange(0, 100, 5)
    rng = np.random.default_rng(0)
    squares = np.stack([100 + frames * 1.0 + rng.normal(0, 4, len(frames)), np.full(len(frames), 50.0),
                        np.full(len(frames), 80.0)], 1)
    dense = smooth_squares(frames, squares, 100, window=15)
    assert dense.shape == (100, 3)
    assert np.abs(np.diff(dense[:, 0], 2)).max() < np.abs(np.diff(squares[:, 0], 2)).max() / 5 / 5
    assert dense[50, 0] == pytest.approx(150, abs=4)


# ---- tubes on synthetic heads at known places ------------------------------------------

STRIDE = 5
SETTINGS = TubeSettings(stride=STRIDE, min_frames=20, min_size=40, increase_area=0.0, max_gap=STRIDE * 2)


def detect_track(backend, faces_at) -> tuple[list[int], list, list]:
    """Detections every STRIDE frames of a clip whose frame k shows ``faces_at(k)``."""
    frames, boxes, scores = [], [], []
    for k in range(0, 100, STRIDE):
        found = backend.detect([draw(W, H, faces_at(k))])[0]
        frames.append(k)
        boxes.append(found.boxes)
        scores.append(found.scores)
    return frames, boxes, scores


def static_box(backend, identity: int, cx: float, cy: float, scale: float) -> np.ndarray:
    [found] = backend.detect([draw(W, H, [(identity, cx, cy, scale)])])
    assert len(found) == 1
    return found.boxes[0]


def test_two_faces_give_two_tubes_at_their_places(backend):
    faces = [(0, 160, 180, 0.9), (5, 480, 180, 0.9)]
    tubes = find_tubes(*detect_track(backend, lambda k: faces), 100, SETTINGS)
    assert len(tubes) == 2 and all(t.reason is None and (t.start, t.end) == (0, 100) for t in tubes)
    for tube, (identity, cx, cy, scale) in zip(sorted(tubes, key=lambda t: t.box[0]), faces):
        assert np.abs(tube.face_box - static_box(backend, identity, cx, cy, scale)).max() <= 2


def test_a_face_that_leaves_and_comes_back_gives_two_tubes_cut_at_the_gap(backend):
    here = lambda k: [(1, 320, 180, 1.0)] if not 35 <= k < 60 else []  # noqa: E731
    tubes = find_tubes(*detect_track(backend, here), 100, SETTINGS)
    assert [(t.start, t.end) for t in tubes] == [(0, 35), (60, 100)]
    truth = static_box(backend, 1, 320, 180, 1.0)
    assert all(np.abs(t.face_box - truth).max() <= 2 for t in tubes)


def test_a_growing_face_is_cut_when_it_overlaps_its_first_box_too_little(backend):
    scale = lambda k: 0.7 + 0.012 * k  # noqa: E731  (0.7 -> 1.9 over 100 frames)
    frames, boxes, scores = detect_track(backend, lambda k: [(4, 320, 190, scale(k))])
    tubes = find_tubes(frames, boxes, scores, 100, SETTINGS)
    assert len(tubes) >= 2
    for tube in tubes:
        first = boxes[frames.index(tube.start)][0]
        inside = [b[0] for f, b in zip(frames, boxes) if tube.start <= f < tube.end]
        assert min(float(iou(b, first)) for b in inside) >= SETTINGS.iou_with_initial  # no tube drifts
        assert np.abs(tube.face_box - np.array([min(b[0] for b in inside), min(b[1] for b in inside),
                                                max(b[2] for b in inside), max(b[3] for b in inside)])).max() == 0
    for before, after in zip(tubes, tubes[1:]):
        assert before.end == after.start  # cut where the overlap fell, no frame lost
        assert float(iou(boxes[frames.index(after.start)][0], boxes[frames.index(before.start)][0])) < 0.25


def test_short_and_small_tubes_are_rejected_with_reasons():
    box = np.array([[10.0, 10, 40, 40]])
    frames = list(range(0, 30, 5))
    tubes = find_tubes(frames, [box] * len(frames), [np.ones(1)] * len(frames), 30,
                       TubeSettings(stride=5, min_frames=50, min_size=10, max_gap=10))
    assert [t.reason for t in tubes] == [TOO_SHORT]
    tubes = find_tubes(frames, [box] * len(frames), [np.ones(1)] * len(frames), 30,
                       TubeSettings(stride=5, min_frames=10, min_size=50, max_gap=10))
    assert [t.reason for t in tubes] == [TOO_SMALL]


def test_reference_track_picks_the_speaker_among_two_faces():
    left, right = np.array([10.0, 10, 60, 60]), np.array([200.0, 10, 250, 60])
    frames = list(range(0, 100, 5))
    reference = {f: right + [3, 0, 3, 0] for f in range(100)}
    tubes = find_tubes(frames, [np.stack([left, right])] * 20, [np.ones(2)] * 20, 100,
                       TubeSettings(stride=5, min_frames=10, min_size=10, increase_area=0.0), reference)
    assert len(tubes) == 1 and np.array_equal(tubes[0].face_box, right)


def test_max_frames_splits_long_tubes():
    box = np.array([[10.0, 10, 60, 60]])
    frames = list(range(0, 100, 5))
    tubes = find_tubes(frames, [box] * 20, [np.ones(1)] * 20, 100,
                       TubeSettings(stride=5, min_frames=10, max_frames=40, min_size=10))
    assert [(t.start, t.end) for t in tubes] == [(0, 40), (40, 80), (80, 100)]
