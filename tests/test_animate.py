"""fomm animate: keypoint transfer, the cached animator, streaming video I/O and the CLI."""

from __future__ import annotations


import subprocess

import numpy as np
import pytest
import torch

from fomm_core.inference.animate import (
    Animator, encode_source, generate_from_cache, hull_area, movement_scale, transfer_keypoints,
)
from fomm_core.faces.boxes import square_box
from fomm_core.inference.video_io import VideoWriter, center_square, probe_video, read_video_batches

from _inference_helpers import SIZE, ffprobe_streams, make_image, make_video, run_cli, save_tiny_checkpoint, tiny_models


def frames(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(n, 3, SIZE, SIZE, generator=g), 5, 1, 2)
    return base.clamp(0, 1)


@pytest.fixture(scope="module")
def models():
    return tiny_models()


# --- keypoint transfer and movement scale --------------------------------------------------


def test_movement_scale_is_the_ratio_of_hull_sides():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], float)
    assert hull_area(square) == pytest.approx(1.0)
    assert movement_scale(2 * square, square) == pytest.approx(2.0)
    assert movement_scale(square, 4 * square + 3) == pytest.approx(0.25)  # translation does not matter
    collinear = np.array([[0, 0], [1, 1], [2, 2]], float)
    assert movement_scale(square, collinear) == 1.0  # degenerate hull: no adaptation


def test_relative_transfer_moves_source_keypoints_by_the_driving_motion():
    g = torch.Generator().manual_seed(0)
    kp_s = {"value": torch.rand(1, 10, 2, generator=g), "jacobian": torch.eye(2).repeat(1, 10, 1, 1) * 1.5}
    kp_0 = {"value": torch.rand(1, 10, 2, generator=g), "jacobian": torch.eye(2).repeat(1, 10, 1, 1) * 0.5}
    kp_d = {"value": torch.rand(3, 10, 2, generator=g), "jacobian": torch.eye(2).repeat(3, 10, 1, 1)}
    out = transfer_keypoints(kp_s, kp_d, kp_0, relative=True, scale=0.5)
    assert torch.allclose(out["value"], kp_s["value"] + 0.5 * (kp_d["value"] - kp_0["value"]))
    # J = J_d J_0^-1 J_s = I * 2 * 1.5
    assert torch.allclose(out["jacobian"], torch.eye(2).expand(3, 10, 2, 2) * 3.0)
    # The initial frame itself maps exactly onto the source keypoints.
    same = transfer_keypoints(kp_s, kp_0, kp_0, relative=True)
    assert torch.allclose(same["value"], kp_s["value"]) and torch.allclose(same["jacobian"], kp_s["jacobian"])
    absolute = transfer_keypoints(kp_s, kp_d, kp_0, relative=False)
    assert torch.equal(absolute["value"], kp_d["value"])


# --- cached generator and batched animator -------------------------------------------------


def test_cached_generation_matches_the_generator(models):
    kp_detector, generator = models
    source, driving = frames(1, seed=1), frames(3, seed=2)
    with torch.inference_mode():
        kp_s, kp_d = kp_detector(source), kp_detector(driving)
        expected = generator(source.expand(3, -1, -1, -1), kp_driving=kp_d,
                             kp_source={k: v.expand(3, *v.shape[1:]) for k, v in kp_s.items()})
        got = generate_from_cache(generator, encode_source(kp_detector, generator, source), kp_d)
    assert torch.allclose(got["prediction"], expected["prediction"], atol=1e-5)
    assert torch.allclose(got["occlusion_map"], expected["occlusion_map"], atol=1e-5)


def test_batch_size_does_not_change_the_animation(models):
    source, driving = frames(1, seed=3), frames(5, seed=4)
    one = Animator(*models, source, relative=True, adapt_scale=True)
    by_one = torch.cat([one(driving[i : i + 1]) for i in range(5)])
    many = Animator(*models, source, relative=True, adapt_scale=True)
    by_batch = torch.cat([many(driving[:2]), many(driving[2:])])
    assert one.scale == pytest.approx(many.scale, rel=1e-6) and one.scale != 1.0
    assert torch.allclose(by_one, by_batch, atol=1e-5)


def test_relative_motionless_driving_reproduces_the_source_pose(models):
    """A still driving video means no motion: every frame is the source driven by itself."""
    kp_detector, generator = models
    source, still = frames(1, seed=5), frames(1, seed=6).expand(4, -1, -1, -1)
    out = Animator(*models, source, relative=True)(still)
    with torch.inference_mode():
        kp_s = kp_detector(source)
        self_driven = generator(source, kp_driving=kp_s, kp_source=kp_s)["prediction"]
    assert torch.allclose(out, self_driven.expand_as(out), atol=1e-5)
    # Absolute mode drives the source with the still image's own keypoints instead.
    absolute = Animator(*models, source, relative=False)(still)
    with torch.inference_mode():
        expected = generator(source, kp_driving=kp_detector(still[:1]), kp_source=kp_s)["prediction"]
    assert torch.allclose(absolute, expected.expand_as(absolute), atol=1e-5)


# --- video I/O and face crop -------------------------------------------------------------


def test_reader_streams_centre_square_batches(tmp_path):
    video = make_video(tmp_path / "wide.mp4", 11, size=48, width=80, audio=False)
    info = probe_video(video)
    assert (info.width, info.height, info.num_frames, info.has_audio) == (80, 48, 11, False)
    assert center_square(80, 48) == (16, 0, 64, 48)
    batches = list(read_video_batches(video, 32, batch=4))
    assert [b.shape for b in batches] == [(4, 32, 32, 3)] * 2 + [(3, 32, 32, 3)]
    assert all(b.dtype == np.uint8 for b in batches)


def test_writer_is_atomic_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 32, 32, 25.0) as writer:
            writer.write(np.zeros((3, 32, 32, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(out, 32, 32, 25.0) as writer:
        writer.write(np.full((5, 32, 32, 3), 128, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    assert int(ffprobe_streams(out)["video"]["nb_read_frames"]) == 5


def test_square_crop_box_stays_square_and_inside():
    assert square_box(50, 55, 30, 200, 100) == (35, 40, 65, 70)
    assert square_box(15, 15, 60, 200, 100) == (0, 0, 60, 60)  # would reach past the top-left: shifted
    left, top, right, bottom = square_box(175, 50, 120, 200, 100)  # larger than the frame: the largest square
    assert right - left == bottom - top == 100 and right <= 200 and left >= 0


# --- CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("animate")
    return {
        "root": root,
        "ckpt": save_tiny_checkpoint(root / "ckpt.pt"),
        "image": make_image(root / "src.png", size=80),
        "video": make_video(root / "drv.mp4", 13, size=48, width=64, audio=True),
        "silent": make_video(root / "silent.mp4", 7, size=48, audio=False),
    }


def test_cli_animates_with_audio_at_model_size(media):
    root = media["root"]
    result = run_cli(["animate", "--source", "src.png", "--driving", "drv.mp4", "--checkpoint", "ckpt.pt",
                      "--out", "out.mp4", "--size", str(SIZE), "--batch-size", "4", "--adapt-scale"], root)
    streams = ffprobe_streams(root / "out.mp4")
    assert int(streams["video"]["nb_read_frames"]) == 13
    assert (streams["video"]["width"], streams["video"]["height"]) == (SIZE, SIZE)
    assert "audio" in streams
    assert "animated 13 frames" in result.stdout


def test_cli_absolute_mode_without_audio(media):
    root = media["root"]
    run_cli(["animate", "--source", "src.png", "--driving", "silent.mp4", "--checkpoint", "ckpt.pt",
             "--out", "silent_out.mp4", "--size", "32", "--absolute"], root)
    streams = ffprobe_streams(root / "silent_out.mp4")
    assert int(streams["video"]["nb_read_frames"]) == 7 and streams["video"]["width"] == 32
    assert "audio" not in streams


def test_cli_defaults_to_the_checkpoint_training_size(media):
    root = media["root"]
    save_tiny_checkpoint(root / "ckpt40.pt", frame_size=40)
    run_cli(["animate", "--source", "src.png", "--driving", "silent.mp4", "--checkpoint", "ckpt40.pt",
             "--out", "sized.mp4"], root)
    video = ffprobe_streams(root / "sized.mp4")["video"]
    assert (video["width"], video["height"]) == (40, 40)


def test_cli_bad_inputs_give_one_line_errors(media):
    root = media["root"]
    (root / "notes.png").write_text("not an image")
    (root / "broken.pt").write_bytes(b"\x00garbage" * 10)
    base = ["animate", "--driving", "drv.mp4", "--out", "x.mp4", "--size", str(SIZE)]
    cases = [
        (["--source", "missing.png", "--checkpoint", "ckpt.pt"], "image not found"),
        (["--source", "notes.png", "--checkpoint", "ckpt.pt"], "not a readable image"),
        (["--source", "src.png", "--checkpoint", "broken.pt"], "cannot read checkpoint"),
        (["--source", "src.png", "--checkpoint", "missing.pt"], "checkpoint not found"),
    ]
    for extra, message in cases:
        result = run_cli(base + extra, root, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    result = run_cli(["animate", "--source", "src.png", "--driving", "notes.png", "--checkpoint", "ckpt.pt",
                      "--out", "x.mp4"], root, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (root / "x.mp4").exists()


def test_bfloat16_animation_stays_close_to_float32(models):
    """bf16 autocast (the fast CPU path) changes pixels only slightly; the originals stay fp32."""
    source, driving = frames(1, seed=7), frames(3, seed=8)
    fp32 = Animator(*models, source)(driving)
    bf16 = Animator(*models, source, dtype=torch.bfloat16)(driving)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert (bf16 - fp32).abs().max() < 0.05
    assert all(p.dtype == torch.float32 for p in models[1].parameters())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in models[1].modules())  # caller's model not folded


def test_truncated_driving_video_is_an_error_not_a_short_animation(media):
    """A driving mp4 cut in half used to give 81 of 201 frames and exit 0 without a word."""
    root = media["root"]
    whole = make_video(root / "long.mp4", 60, size=48, audio=False)
    # faststart puts the index first, so the cut file still lists all 60 frames
    moved = root / "long_fast.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(whole), "-c", "copy",
                    "-movflags", "+faststart", str(moved)], check=True)
    data = moved.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    result = run_cli(["animate", "--source", "src.png", "--driving", "cut.mp4", "--checkpoint", "ckpt.pt",
                      "--out", "cut_out.mp4", "--size", "32"], root, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "cut.mp4: decoded" in lines[0] and "of the 60 frames the container lists" in lines[0]
    assert not (root / "cut_out.mp4").exists()


def test_out_replaces_only_videos_fomm_wrote(media):
    root = media["root"]
    args = ["animate", "--source", "src.png", "--driving", "silent.mp4", "--checkpoint", "ckpt.pt", "--size", "32"]
    run_cli(args + ["--out", "again.mp4"], root)
    run_cli(args + ["--out", "again.mp4"], root)  # our own earlier output: replaced
    foreign = make_video(root / "holiday.mp4", 5, size=32, audio=False)
    before = foreign.read_bytes()
    result = run_cli(args + ["--out", "holiday.mp4"], root, check=False)
    assert result.returncode == 2 and "was not written by `fomm animate`" in result.stderr
    assert foreign.read_bytes() == before
    result = run_cli(args + ["--out", "silent.mp4"], root, check=False)
    assert result.returncode == 2 and "is the input" in result.stderr
