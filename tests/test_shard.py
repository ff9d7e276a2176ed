"""`fomm shard` end to end on generated crop-stage output: shards, index, features, errors."""

from __future__ import annotations

from dataclasses import replace
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
    early = run_shard(work, "clips", "--out", "parts", "--groundtruth", "groundtruth", "--merge")
    assert early.returncode == 2 and "Traceback" not in early.stderr
    assert "1 of 3 shards are missing" in early.stderr and "shards/shard-00001.frames" in early.stderr
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
    ("out-holds-clips", ("o/clips", "--out", "o"), "--out o contains the input o/clips"),
    ("bad-part", ("clips", "--out", "o", "--part", "3/2"), "--part 3/2: K must be between 1 and N=2"),
    ("part-and-merge", ("clips", "--out", "o", "--part", "1/2", "--merge"), "--merge and --part do not go together"),
    ("option-like-id", ("clips", "--out", "o"),
     "row 1: clip id 'id00004#-oProxyComm#000003#000017' is not of the form person#video#start#end"),
])
def test_user_errors_are_one_line(tmp_path, setup, args, message):
    write_params(tmp_path)
    if setup != "none":
        make_crop_dir(tmp_path, clips=CLIPS[4:5], with_gt=False, media=False)
    if setup == "no-manifest":
        (tmp_path / "clips" / "manifest.parquet").unlink()
    if setup == "bad-param":
        write_params(tmp_path, png_compression=12)
    if setup == "option-like-id":  # never reaches ffprobe/ffmpeg (whose paths are absolute anyway)
        make_crop_dir(tmp_path, clips=(replace(CLIPS[5], video="-oProxyComm"),), with_gt=False, media=False)
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


def _finished_clips(out: Path) -> int:
    """Clips whose work is on disk: in finished shards, or spilled and waiting for their shard."""
    from fomm_core.atomic import is_temporary
    from fomm_core.shard_file import read_clip_table

    done = {clip["clip_id"] for p in (out / "shards").glob("shard-*.frames") if not is_temporary(p.name)
            for clip in read_clip_table(p)["clips"]}
    spills = out / ".spill"
    if spills.is_dir():  # (a spill outlives its clip's shard for a moment: counted once)
        done |= {p.name[:-len(".frames")] for p in spills.glob("*.frames") if not is_temporary(p.name)}
    return len(done)


def _descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        kids = [child for child, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def _summary_counts(stdout: str) -> tuple[int, int]:
    import re

    match = re.search(r"\((\d+) clips encoded, (\d+) kept\)", stdout)
    assert match, stdout
    return int(match.group(1)), int(match.group(2))


def test_sigkill_mid_run_then_rerun_redoes_only_the_clips_in_flight(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from _shard_helpers import REPO, FakeClip

    clips = tuple(FakeClip(f"id{p:05d}", f"vid{k:08d}", 0, 30, "train") for k in range(16) for p in [k % 4])
    make_crop_dir(tmp_path, clips=clips, with_gt=False)
    write_params(tmp_path, frames_per_shard=60, workers=1, image_format="png", png_compression=1)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "shard", "clips", "--out", "out"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while (_finished_clips(tmp_path / "out") if (tmp_path / "out" / "shards").is_dir() else 0) < 5:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    workers = _descendants(proc.pid)  # the fork server, its encoding workers and their ffmpeg
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(100):  # they all die with the stage
        if not any(Path(f"/proc/{pid}").exists() for pid in workers):
            break
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    done = _finished_clips(tmp_path / "out")
    assert 5 <= done < len(clips), done
    assert not (tmp_path / "out" / "index.parquet").exists()
    rerun = run_shard(tmp_path, "clips", "--out", "out")
    assert rerun.returncode == 0, rerun.stderr
    assert _summary_counts(rerun.stdout) == (len(clips) - done, done)  # nothing finished is redone
    names = [p.name for p in (tmp_path / "out").rglob("*")]
    assert not [n for n in names if ".tmp-" in n] and ".spill" not in names  # the killed run's temporaries went
    reference = run_shard(tmp_path, "clips", "--out", "reference")
    assert reference.returncode == 0, reference.stderr
    assert all_files(tmp_path / "out") == all_files(tmp_path / "reference")


def test_rerun_with_nothing_changed_encodes_nothing_and_a_changed_clip_redoes_its_shard(tmp_path):
    make_crop_dir(tmp_path, clips=CLIPS[:4], with_gt=False)
    write_params(tmp_path, frames_per_shard=40, workers=2)  # shards: clips 0+1 (37 frames), 2+3
    first = run_shard(tmp_path, "clips", "--out", "out")
    assert first.returncode == 0, first.stderr
    assert _summary_counts(first.stdout) == (4, 0)
    again = run_shard(tmp_path, "clips", "--out", "out")
    assert _summary_counts(again.stdout) == (0, 4)
    before = all_files(tmp_path / "out")
    # Re-encode one clip's mp4 (as a re-run of crop with other settings would): only its shard is
    # redone (its two clips), the other shard and its clips' features stay as they were.
    from _shard_helpers import make_mp4

    make_mp4(tmp_path / "clips" / "train" / f"{CLIPS[0].clip_id}.mp4", CLIPS[0].frames + 1, hue=200)
    (tmp_path / "out" / "index.arrow").write_bytes(b"ARROW1")  # the column index of an older fomm shard
    changed = run_shard(tmp_path, "clips", "--out", "out")
    assert changed.returncode == 0, changed.stderr
    assert _summary_counts(changed.stdout) == (2, 2)
    after = all_files(tmp_path / "out")
    assert after.keys() == before.keys()  # the older index went with the index it belonged to
    assert {k for k in after if after[k] != before[k]} == {
        "index.parquet", "index.cols", "shards/shard-00000.frames", f"features/train/{CLIPS[0].clip_id}.npz"}


def test_an_output_folder_not_written_by_shard_is_refused_and_stale_temporaries_are_removed(tmp_path):
    from fomm_core.atomic import HOST_TAG

    make_crop_dir(tmp_path, clips=CLIPS[4:5], with_gt=False)
    write_params(tmp_path, workers=1)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "PRECIOUS.txt").write_text("keep me")
    refused = run_shard(tmp_path, "clips", "--out", "mine")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "already holds 'PRECIOUS.txt', which `fomm shard` did not write" in refused.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["PRECIOUS.txt"]
    assert (tmp_path / "mine" / "PRECIOUS.txt").read_text() == "keep me"
    # Leftovers of a killed run (dead writer on this host) inside our own output go on the re-run.
    assert run_shard(tmp_path, "clips", "--out", "out").returncode == 0
    dead = subprocess_dead_pid()
    stale = [tmp_path / "out" / "shards" / f".shard-00001.tmp-{HOST_TAG}-{dead}-abc.tmp.frames",
             tmp_path / "out" / ".spill" / f".x.tmp-{HOST_TAG}-{dead}-abc.tmp.npz"]
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 100_000)
    assert run_shard(tmp_path, "clips", "--out", "out").returncode == 0
    assert not any(p.exists() for p in stale)


def subprocess_dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_audio_shorter_than_the_clip_is_an_error_naming_it(tmp_path):
    from _shard_helpers import FakeClip

    short = FakeClip("id00009", "vidSSSSSSSS", 0, 25, "train", wav_short=3)
    make_crop_dir(tmp_path, clips=(short,), with_gt=False)
    write_params(tmp_path, workers=1)
    result = run_shard(tmp_path, "clips", "--out", "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "Warning" not in result.stderr
    last = result.stderr.strip().splitlines()
    assert len([line for line in last if line.startswith("error: ")]) == 1
    assert short.clip_id in last[-1] and "0.88 s" in last[-1] and "1.00 s" in last[-1] and "re-crop" in last[-1]
    # A wav cut to a third (its header still claims the whole length): the same one line, no warning.
    ok = FakeClip("id00009", "vidSSSSSSSS", 0, 25, "train")
    make_crop_dir(tmp_path, clips=(ok,), with_gt=False)
    wav = tmp_path / "clips" / "train" / f"{ok.clip_id}.wav"
    wav.write_bytes(wav.read_bytes()[: wav.stat().st_size // 3])
    result = run_shard(tmp_path, "clips", "--out", "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "WavFileWarning" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert ok.clip_id in last and "need 1.00 s" in last


def test_a_worker_killed_mid_run_is_one_line_and_the_rerun_finishes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from _shard_helpers import REPO, FakeClip

    clips = tuple(FakeClip(f"id{k % 3:05d}", f"vid{k:08d}", 0, 30, "train") for k in range(8))
    make_crop_dir(tmp_path, clips=clips, with_gt=False)
    write_params(tmp_path, frames_per_shard=60, workers=1)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "shard", "clips", "--out", "out"], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while True:  # the encoding worker: the stage's child that runs ffmpeg
        worker = [_parent(pid) for pid in _descendants(proc.pid)
                  if _cmdline(pid).startswith(b"ffmpeg") and _parent(_parent(pid)) == proc.pid]
        if worker:
            break
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    os.kill(worker[0], signal.SIGKILL)  # as the OOM killer would
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 2 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: an encoding worker died")
    rerun = run_shard(tmp_path, "clips", "--out", "out")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(clips)} clips" in rerun.stdout


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return -1


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
