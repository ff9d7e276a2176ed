"""Training-like face crops for users: ``fomm animate --crop-face`` / ``--crop-box`` on real media.

The source is astronaut.png (a real photo); the driving video is a synthetic head that
moves across a wide frame, so a centred crop would miss it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fomm_core.faces import DlibBackend
from fomm_core.inference.face_crop import read_cropped_batches, video_crop_boxes

from _face_helpers import ASTRONAUT, draw, write_video
from _inference_helpers import ffprobe_streams, run_cli, save_tiny_checkpoint

W, H = 480, 270
FRAMES = 30


def centre_x(k: int) -> float:
    return 130 + 8 * k  # left to right: 130 -> 362 px


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("face_crop")
    save_tiny_checkpoint(root / "ckpt.pt", frame_size=40)
    write_video(root / "wide.mp4", [draw(W, H, [(4, centre_x(k), 140, 1.0)], mouth_open=0.5 * (k % 2))
                                    for k in range(FRAMES)])
    cv2.imwrite(str(root / "source.jpg"), cv2.imread(str(ASTRONAUT)))
    cv2.imwrite(str(root / "grey.png"), np.full((120, 200, 3), 128, np.uint8))
    return root


def test_driving_crop_follows_the_face_smoothly(media):
    crop = video_crop_boxes(media / "wide.mp4", DlibBackend(), stride=5, window=5)
    assert crop.boxes.shape == (FRAMES, 4) and crop.found == crop.measured == 6
    centres = (crop.boxes[:, 0] + crop.boxes[:, 2]) / 2
    truth = np.array([centre_x(k) for k in range(FRAMES)])
    assert np.abs(centres - truth)[3:-3].max() < 12  # follows the head (ends held)
    assert np.all(np.diff(centres) >= -1)  # no jitter backwards
    sides = crop.boxes[:, 2] - crop.boxes[:, 0]
    assert np.all(sides == crop.boxes[:, 3] - crop.boxes[:, 1]) and sides.std() < 3
    first = next(read_cropped_batches(media / "wide.mp4", crop.boxes, 64, batch=4))
    assert first.shape == (4, 64, 64, 3)


def test_animate_crop_face_on_a_photo_and_a_wide_video(media):
    run_cli(["animate", "--source", "source.jpg", "--driving", "wide.mp4", "--checkpoint", "ckpt.pt",
             "--out", "out.mp4", "--crop-face", "--batch-size", "8", "--device", "cpu"], media)
    stream = ffprobe_streams(media / "out.mp4")
    assert (stream["video"]["width"], stream["video"]["height"]) == (40, 40)  # the checkpoint's training size
    assert int(stream["video"]["nb_read_frames"]) == FRAMES and "audio" in stream


def test_animate_crop_box_and_time_range(media):
    run_cli(["animate", "--source", "source.jpg", "--driving", "wide.mp4", "--checkpoint", "ckpt.pt",
             "--out", "part.mp4", "--crop-box", "100,20,300,220", "--start", "0.4", "--end", "0.8",
             "--device", "cpu"], media)
    assert int(ffprobe_streams(media / "part.mp4")["video"]["nb_read_frames"]) == 10
    bad = run_cli(["animate", "--source", "source.jpg", "--driving", "wide.mp4", "--checkpoint", "ckpt.pt",
                   "--out", "bad.mp4", "--crop-box", "100,20,900,220", "--device", "cpu"], media, check=False)
    assert bad.returncode == 2 and "reaches outside" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_animate_crop_face_without_a_face_is_a_one_line_error(media):
    result = run_cli(["animate", "--source", "grey.png", "--driving", "wide.mp4", "--checkpoint", "ckpt.pt",
                      "--out", "grey_out.mp4", "--crop-face", "--device", "cpu"], media, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and "no face found" in lines[0], result.stderr
    assert not (media / "grey_out.mp4").exists()
