"""The Haar-cascade face crop on faces drawn by this project's synthetic renderer.

Each face is drawn with :class:`pipeline.synth.face.FaceModel`, whose landmarks are exactly
where the pixels are, placed off-centre in a wide frame so a centred crop would miss it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fomm_core.errors import FommError
from fomm_core.inference.face_crop import detect_face, face_crop_box, load_face_detector
from fomm_core.inference.video_io import VideoWriter
from pipeline.synth.face import FaceModel
from pipeline.synth.identity import make_background, make_style

from _inference_helpers import ffprobe_streams, run_cli, save_tiny_checkpoint

WIDTH, HEIGHT = 320, 180


def draw_face(identity: int, centre: tuple[float, float], mouth_open: float = 0.3, yaw: float = 0.0,
              width: int = WIDTH, height: int = HEIGHT) -> tuple[np.ndarray, np.ndarray]:
    """An RGB frame with one synthetic head at ``centre`` (pixels) and its (5, 2) landmarks."""
    style = make_style(np.random.default_rng(identity), identity)
    frame = make_background(np.random.default_rng(1000 + identity), width, height)
    model = FaceModel(style, height)
    pose = np.array([centre[0], centre[1], 0.03, 1.0, yaw], np.float32)  # tx, ty, roll, scale, yaw
    model.draw(frame, pose, 0.0, mouth_open)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), model.landmarks(pose, mouth_open)


def inside(box, points: np.ndarray) -> bool:
    left, top, right, bottom = box
    return bool(np.all((points[:, 0] >= left) & (points[:, 0] <= right)
                       & (points[:, 1] >= top) & (points[:, 1] <= bottom)))


@pytest.fixture(scope="module")
def detector():
    return load_face_detector()


@pytest.mark.parametrize("identity, centre, yaw", [(0, (240, 85), 0.0), (1, (75, 95), 0.2), (3, (250, 80), -0.25)])
def test_detector_box_holds_every_landmark(detector, identity, centre, yaw):
    image, landmarks = draw_face(identity, centre, yaw=yaw)
    box = detect_face(image, detector)
    assert box is not None
    assert inside(box, landmarks), (box, landmarks)
    left, top, right, bottom = box
    assert right - left < WIDTH / 2  # the face, not the whole frame


def test_crop_box_is_a_square_inside_the_image_around_the_face(detector):
    image, landmarks = draw_face(2, (255, 90))
    left, top, right, bottom = face_crop_box(image, "face.png", detector=detector)
    assert right - left == bottom - top > 0
    assert 0 <= left and 0 <= top and right <= WIDTH and bottom <= HEIGHT
    assert inside((left, top, right, bottom), landmarks)
    assert (left + right) / 2 > WIDTH / 2 + 40  # follows the off-centre face, not the frame centre


def test_uniform_image_has_no_face(detector):
    grey = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    assert detect_face(grey, detector) is None
    with pytest.raises(FommError, match="grey.png: no face found"):
        face_crop_box(grey, "grey.png", detector=detector)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("face_crop")
    save_tiny_checkpoint(root / "ckpt.pt", frame_size=40)
    with VideoWriter(root / "wide.mp4", WIDTH, HEIGHT, 25.0) as writer:
        for k in range(6):  # a face to the right, moving its mouth
            writer.write(draw_face(4, (230 + k, 88), mouth_open=0.5 * (k % 2))[0])
    source, _ = draw_face(5, (90, 110), width=300, height=200)  # a wide source, face to the left
    cv2.imwrite(str(root / "source.png"), cv2.cvtColor(source, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "grey.png"), np.full((120, 200, 3), 128, np.uint8))
    return root


def test_animate_crop_face_on_wide_inputs(media):
    run_cli(["animate", "--source", "source.png", "--driving", "wide.mp4", "--checkpoint", "ckpt.pt",
             "--out", "out.mp4", "--crop-face", "--batch-size", "3", "--device", "cpu"], media)
    video = ffprobe_streams(media / "out.mp4")["video"]
    assert (video["width"], video["height"]) == (40, 40)  # the checkpoint's training size
    assert int(video["nb_read_frames"]) == 6


def test_animate_crop_face_without_a_face_is_a_one_line_error(media):
    result = run_cli(["animate", "--source", "grey.png", "--driving", "wide.mp4", "--checkpoint", "ckpt.pt",
                      "--out", "grey_out.mp4", "--crop-face", "--device", "cpu"], media, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and "no face found" in lines[0], result.stderr
    assert not (media / "grey_out.mp4").exists()
