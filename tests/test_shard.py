"""`fomm shard` end to end on generated crop-stage output: shards, index, features, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from _shard_helpers import (
    CLIPS, CROP_BOX, GT_HEIGHT, GT_WIDTH, SIZE, SRC_SCALE, decode_mp4_rgb, make_crop_dir,
    run_shard, write_params,
)
from fomm_core.shard_file import ShardFile

FRAMES_PER_SHARD = 40
LOSSLESS = dict(frames_per_shard=FRAMES_PER_SHARD, image_format="png", png_compression=1, workers=2)
OK = [c for c in CLIPS if c.status == "ok"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard")
    make_crop_dir(root)
    write_params(root, **LOSSLESS)
    return root


@pytest.fixture(scope="module")
def built(work) -> tuple[Path, str]:
    result = run_shard(work, "clips", "--out", "out", "--groundtruth", "groundtruth")
    assert result.returncode == 0, result.stderr
    return work / "out", result.stdout


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_summary_and_index(built):
    out, stdout = built
    assert f"{len(OK)} clips" in stdout and f"{sum(c.frames for c in OK)} frames" in stdout
    index = pd.read_parquet(out / "index.parquet")
    assert list(index.columns) == [
        "clip_id", "person_id", "video_id", "partition", "shard", "row_start", "row_end",
        "num_frames", "fps", "image_format", "height", "width", "features", "has_groundtruth"]
    expected = sorted((c.partition, c.clip_id) for c in OK)
    assert list(zip(index["partition"], index["clip_id"])) == expected  # failed row skipped
    by_id = index.set_index("clip_id")
    for clip in OK:
        row = by_id.loc[clip.clip_id]
        assert row["num_frames"] == clip.frames == row["row_end"] - row["row_start"]
        assert (row["person_id"], row["video_id"]) == (clip.person, clip.video)
        assert (row["height"], row["width"], row["image_format"]) == (SIZE, SIZE, "png")
        assert row["has_groundtruth"]
        assert (out / row["features"]).is_file()


def test_shards_are_bounded_and_clips_do_not_span(built):
    out, _ = built
    index = pd.read_parquet(out / "index.parquet")
    shards = sorted(index["shard"].unique())
    assert len(shards) >= 2 and shards[0] == "shards/shard-00000.frames"
    assert sorted(str(p.relative_to(out)) for p in (out / "shards").iterdir()) == shards
    assert index.groupby("shard").size().max() >= 2  # shards do pack several clips
    assert not (out / ".spill").exists()  # every spill was assembled and removed
    for shard in shards:
        clips = index[index["shard"] == shard].sort_values("row_start")
        with ShardFile(out / shard) as f:
            assert f.num_frames == clips["row_end"].max()
            # a shard closes before the clip that would take it past the limit
            assert f.num_frames <= FRAMES_PER_SHARD or len(clips) == 1
            table = f.clips()
        assert list(clips["row_start"]) == [0] + list(clips["row_end"])[:-1]  # contiguous
        # The shard describes its own clips: the index is rebuilt from these.
        assert [c["clip_id"] for c in table["clips"]] == list(clips["clip_id"])
        assert [c["row_start"] for c in table["clips"]] == list(clips["row_start"])


def test_rows_hold_the_exact_mp4_frames(built, work):
    out, _ = built
    index = pd.read_parquet(out / "index.parquet")
    for row in index.itertuples():
        with ShardFile(out / row.shard) as f:
            images = f.read(list(range(row.row_start, row.row_end)))
            assert f.read_span(row.row_start, row.num_frames) == images
        expected = decode_mp4_rgb(work / "clips" / row.partition / f"{row.clip_id}.mp4")
        assert len(expected) == row.num_frames == len(images)
        for k, data in enumerate(images):
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            img = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(img, expected[k])
        assert not np.array_equal(expected[0], expected[-1])


def test_rerun_is_byte_identical_with_any_workers_and_parts(built, work):
    out, _ = built
    write_params(work, **{**LOSSLESS, "workers": 1})
    result = run_shard(work, "clips", "--out", "again", "--groundtruth", "groundtruth")
    assert result.returncode == 0, result.stderr
    first, second = all_files(out), all_files(work / "again")
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name
    # Split in two parts (as two machines would): the second to finish publishes the index.
    one = run_shard(work, "clips", "--out", "parts", "--groundtruth", "groundtruth", "--part", "1/2")
    assert one.returncode == 0, one.stderr
    assert "the last part (or fomm shard --merge) writes the index" in one.stdout
    assert not (work / "parts" / "index.parquet").exists()
    two = run_shard(work, "clips", "--out", "parts", "--groundtruth", "groundtruth", "--part", "2/2")
    assert two.returncode == 0, two.stderr
    assert all_files(work / "parts") == first
    write_params(work, **LOSSLESS)


def test_features_audio_and_logmel(built):
    out, _ = built
    index = pd.read_parquet(out / "index.parquet").set_index("clip_id")
    for clip in OK:
        with np.load(out / index.loc[clip.clip_id, "features"]) as npz:
            assert int(npz["sample_rate"]) == 16000 and float(npz["logmel_rate"]) == 100.0
            if clip.audio:
                assert npz["audio"].shape == (clip.frames * 640,) and npz["audio"].dtype == np.float32
                assert npz["logmel"].shape == (4 * clip.frames, 26) and npz["logmel"].dtype == np.float32
                assert 0.45 < np.abs(npz["audio"]).max() <= 0.51  # the 0.5-amplitude tone
                # Resampled to 16 kHz and zero-padded to the video's length when shorter by <= 1 frame.
                real = (clip.frames - clip.wav_short) * 640
                assert np.abs(npz["audio"][real - 640:real]).max() > 0.4
                assert not npz["audio"][real:].any()
            else:
                assert npz["audio"].shape == (0,) and npz["logmel"].shape == (0, 26)


def test_groundtruth_mapped_into_crop(built, work):
    out, _ = built
    index = pd.read_parquet(out / "index.parquet").set_index("clip_id")
    left, top, right, bottom = CROP_BOX
    for clip in OK:
        with np.load(work / "groundtruth" / f"{clip.video}.npz") as gt:
            src = gt["landmarks"][clip.start:clip.start + clip.frames]
            pose = gt["pose"][clip.start:clip.start + clip.frames]
            mouth = gt["mouth_open"][clip.start:clip.start + clip.frames]
        with np.load(out / index.loc[clip.clip_id, "features"]) as npz:
            lm = npz["gt_landmarks"]
            assert lm.shape == (clip.frames, 5, 2) and lm.dtype == np.float32
            ex = (src[..., 0] * SRC_SCALE - left) / (right - left) * SIZE
            ey = (src[..., 1] * SRC_SCALE - top) / (bottom - top) * SIZE
            np.testing.assert_allclose(lm[..., 0], ex, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(lm[..., 1], ey, rtol=1e-5, atol=1e-3)
            np.testing.assert_array_equal(npz["gt_mouth_open"], mouth)
            np.testing.assert_array_equal(npz["gt_pose"][:, 2:], pose[:, 2:])
            assert list(npz["gt_landmark_names"])[0] == "left_eye"
            assert list(npz["gt_pose_names"]) == ["tx", "ty", "roll", "scale", "yaw"]
    assert (GT_WIDTH, GT_HEIGHT) == (640, 360)


def test_without_groundtruth_and_jpeg_quality(work):
    sizes, errors = {}, {}
    for quality in (30, 95):
        write_params(work, image_format="jpeg", jpeg_quality=quality, jpeg_subsampling=420, workers=2)
        result = run_shard(work, "clips", "--out", f"jpeg{quality}")
        assert result.returncode == 0, result.stderr
        out = work / f"jpeg{quality}"
        index = pd.read_parquet(out / "index.parquet")
        assert not index["has_groundtruth"].any() and set(index["image_format"]) == {"jpeg"}
        with np.load(out / index["features"].iloc[0]) as npz:
            assert not [k for k in npz.files if k.startswith("gt_")]
        sizes[quality] = sum(p.stat().st_size for p in (out / "shards").iterdir())
        row = index.iloc[0]
        with ShardFile(out / row.shard) as f:
            (data,) = f.read([row.row_start])
        assert data[:2] == b"\xff\xd8"
        img = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ref = decode_mp4_rgb(work / "clips" / row.partition / f"{row.clip_id}.mp4")[0]
        errors[quality] = np.abs(img.astype(int) - ref).mean()
    assert sizes[30] < 0.7 * sizes[95]
    assert errors[95] < errors[30] / 2  # (4:2:0 chroma bounds the error on this saturated pattern)
    write_params(work, **LOSSLESS)


def test_params_defaults_and_failed_run_keeps_previous_output(tmp_path):
    make_crop_dir(tmp_path, clips=CLIPS[4:5], with_gt=False)
    write_params(tmp_path, clips_dir="clips", out="from-params")
    assert run_shard(tmp_path).returncode == 0  # CLIPS_DIR and --out from params.yaml
    assert len(pd.read_parquet(tmp_path / "from-params" / "index.parquet")) == 1
    before = all_files(tmp_path / "from-params")
    (tmp_path / "clips" / CLIPS[4].partition / f"{CLIPS[4].clip_id}.mp4").write_bytes(b"broken")
    result = run_shard(tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "rerun fomm crop" in last and "#000009.mp4" in last
    assert "Traceback" not in result.stderr
    assert all_files(tmp_path / "from-params") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".from-params")] == []


@pytest.mark.parametrize("setup, args, message", [
    ("none", ("nowhere", "--out", "o"), "nowhere: clips directory not found"),
    ("no-manifest", ("clips", "--out", "o"), "manifest.parquet: manifest not found"),
    ("missing-mp4", ("clips", "--out", "o"), "row 1: "),
    ("bad-param", ("clips", "--out", "o"), "png_compression must be 0..9, got 12"),
    ("bad-gt", ("clips", "--out", "o", "--groundtruth", "nogt"), "nogt: ground-truth folder not found"),
    ("out-holds-clips", ("o/clips", "--out", "o"), "would overwrite the input"),
    ("bad-part", ("clips", "--out", "o", "--part", "3/2"), "--part 3/2: K must be between 1 and N=2"),
    ("part-and-merge", ("clips", "--out", "o", "--part", "1/2", "--merge"), "--merge and --part do not go together"),
])
def test_user_errors_are_one_line(tmp_path, setup, args, message):
    write_params(tmp_path)
    if setup != "none":
        make_crop_dir(tmp_path, clips=CLIPS[4:5], with_gt=False, media=False)
    if setup == "no-manifest":
        (tmp_path / "clips" / "manifest.parquet").unlink()
    if setup == "bad-param":
        write_params(tmp_path, png_compression=12)
    result = run_shard(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("shard ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_help_explains():
    result = run_shard(Path("."), "--help")
    assert result.returncode == 0
    assert "--groundtruth" in result.stdout and "shards" in result.stdout


def test_png_levels_are_lossless_and_level0_is_unfiltered_stored():
    from pipeline.shard.config import ShardConfig
    from pipeline.shard.encode import encoder

    rng = np.random.default_rng(0)
    smooth = np.repeat(np.arange(48, dtype=np.uint8)[None, :, None], 40, axis=0).repeat(3, axis=2)
    frame = np.ascontiguousarray(smooth + rng.integers(0, 4, smooth.shape, dtype=np.uint8))
    sizes = {}
    for level in (0, 1, 6):
        data = encoder(ShardConfig(image_format="png", png_compression=level))(frame)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), frame)
        sizes[level] = len(data)
    assert sizes[1] < sizes[0] and sizes[6] <= sizes[1]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        # Stored deflate of unfiltered rows: every scanline is its filter byte 0 + raw BGR bytes.
        raw = encoder(ShardConfig(image_format="png", png_compression=0))(frame)
        row = frame.shape[1] * 3
        first = raw.index(b"IDAT") + 4 + 2 + 5  # chunk type, zlib header, stored block header
        assert raw[first] == 0 and raw[first + 1:first + 1 + row] == frame[0, :, ::-1].tobytes()
