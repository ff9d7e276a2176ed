"""The synth stage: real rendering, real ffmpeg encoding, real decoding of what it wrote."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fomm_core.outputs import MARKER
from pipeline.ids import is_person_id, is_video_id
from pipeline.synth.config import SAMPLES_PER_FRAME, SynthConfig
from pipeline.synth.plan import plan_videos
from pipeline.synth.render import frames, video_signals

CSV_COLUMNS = ["video_id", "start", "end", "bbox", "fps", "width", "height", "partition", "person_id", "url"]

TINY = {
    "seed": 7,
    "identities": 3,
    "test_identities": 1,
    "videos_per_identity": 1,
    "clips_per_video": 2,
    "min_clip_seconds": 1.0,
    "max_clip_seconds": 1.4,
    "gap_seconds": 0.3,
    "lead_seconds": 0.2,
    "workers": 2,
}
# even smaller frames for the runs that only compare outputs with each other
SMALL = {**TINY, "identities": 2, "clips_per_video": 1, "width": 192, "height": 108, "workers": 1}


def run_cli(cwd: Path, section: dict | None, *args: str) -> subprocess.CompletedProcess:
    params = cwd / "params.yaml"
    params.write_text(yaml.safe_dump({"synth": section} if section is not None else {}))
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "synth", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == CSV_COLUMNS
        return list(reader)


def load_gt(out: Path, video_id: str) -> dict:
    with np.load(out / "groundtruth" / f"{video_id}.npz") as data:
        return {key: data[key] for key in data.files}


def decode_frames(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    return np.stack(images)


def decode_audio(path: Path) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "22050", "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32)


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    ).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def patch_gray(image: np.ndarray, x: float, y: float, radius: int = 1) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    cx, cy = int(round(x)), int(round(y))
    return float(gray[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1].mean())


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    """One real CLI run of the tiny set at full 640x360, shared by the read-only checks."""
    cwd = tmp_path_factory.mktemp("synth")
    result = run_cli(cwd, TINY)
    assert result.returncode == 0, result.stderr
    out = cwd / "artifacts" / "synth"
    return out, result, read_csv(out / "vox-metadata.csv")


@pytest.fixture(scope="module")
def decoded(synth_run):
    """Per video: (groundtruth, decoded BGR frames, decoded audio)."""
    out, _, rows = synth_run
    videos = {}
    for video_id in dict.fromkeys(row["video_id"] for row in rows):
        path = out / "videos" / f"{video_id}.mp4"
        videos[video_id] = (load_gt(out, video_id), decode_frames(path), decode_audio(path))
    return videos


# --- layout and metadata ------------------------------------------------------------------


def test_cli_writes_csv_pointing_at_videos(synth_run):
    out, result, rows = synth_run
    cfg = SynthConfig(**TINY)
    expected_clips = cfg.identities * cfg.videos_per_identity * cfg.clips_per_video
    assert len(rows) == expected_clips
    line = " ".join(result.stdout.split())  # rich may wrap the summary at 80 columns
    videos = cfg.identities * cfg.videos_per_identity
    assert line.startswith(f"synth: {videos} videos, {expected_clips} clips")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "groundtruth", "videos", "vox-metadata.csv"]
    ids = sorted({row["video_id"] for row in rows})
    assert sorted(p.name for p in (out / "videos").iterdir()) == [f"{v}.mp4" for v in ids]  # no temp files
    assert sorted(p.name for p in (out / "groundtruth").iterdir()) == [f"{v}.npz" for v in ids]
    assert not list(out.parent.glob(".synth*"))  # the temporary directory was renamed away
    for row in rows:
        assert is_video_id(row["video_id"]) and is_person_id(row["person_id"])
        # relative to the CSV's folder, so the CSV (and dvc.lock) do not depend on where the project lives
        assert row["url"] == f"videos/{row['video_id']}.mp4" and (out / row["url"]).is_file()
        assert (int(row["fps"]), int(row["width"]), int(row["height"])) == (25, 640, 360)
        left, top, right, bottom = (int(v) for v in row["bbox"].split("-"))
        assert 0 <= left < right <= 640 and 0 <= top < bottom <= 360
        assert 0 <= int(row["start"]) < int(row["end"])


def test_partitions_split_identities(synth_run):
    _, _, rows = synth_run
    train = {r["person_id"] for r in rows if r["partition"] == "train"}
    test = {r["person_id"] for r in rows if r["partition"] == "test"}
    assert train and test and not train & test
    assert len(test) == TINY["test_identities"]
    assert len(train) == TINY["identities"] - TINY["test_identities"]


def test_clips_follow_each_other_with_lead_and_gaps(synth_run, decoded):
    _, _, rows = synth_run
    by_video: dict[str, list[dict]] = {}
    for row in rows:
        by_video.setdefault(row["video_id"], []).append(row)
    for video_id, clips in by_video.items():
        n = len(decoded[video_id][0]["mouth_open"])
        spans = [(int(c["start"]), int(c["end"])) for c in clips]
        assert spans[0][0] >= round(TINY["lead_seconds"] * 25)
        assert spans[-1][1] + round(TINY["lead_seconds"] * 25) <= n
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start > end  # a real gap between utterances
        for start, end in spans:
            assert TINY["min_clip_seconds"] * 25 - 1 <= end - start <= TINY["max_clip_seconds"] * 25 + 1


# --- the encoded files --------------------------------------------------------------------


def test_mp4_streams(synth_run, decoded):
    out, _, _ = synth_run
    for video_id, (gt, images, _) in decoded.items():
        streams = ffprobe(out / "videos" / f"{video_id}.mp4")
        video, audio = streams["video"], streams["audio"]
        n = len(gt["mouth_open"])
        assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
        assert (video["width"], video["height"]) == (640, 360)
        assert video["r_frame_rate"] == "25/1"
        assert int(video["nb_read_frames"]) == n == len(images)
        assert audio["codec_name"] == "aac" and int(audio["sample_rate"]) == 22050
        assert int(audio["channels"]) == 1
        assert abs(float(audio["duration"]) - n / 25) < 0.05


# --- ground truth -------------------------------------------------------------------------


def test_groundtruth_shapes_and_landmarks_inside_clip_box(synth_run, decoded):
    _, _, rows = synth_run
    for row in rows:
        gt = decoded[row["video_id"]][0]
        n = len(gt["mouth_open"])
        assert gt["landmarks"].shape == (n, 5, 2) and gt["landmarks"].dtype == np.float32
        assert gt["pose"].shape == (n, 5) and gt["pose"].dtype == np.float32
        assert gt["blink"].shape == (n,) and gt["mouth_open"].dtype == np.float32
        assert list(gt["landmark_names"]) == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
        assert list(gt["pose_names"]) == ["tx", "ty", "roll", "scale", "yaw"]
        assert (int(gt["width"]), int(gt["height"]), int(gt["fps"])) == (640, 360, 25)
        assert 0 <= gt["mouth_open"].min() and gt["mouth_open"].max() == pytest.approx(1.0)
        assert 0 <= gt["blink"].min() and gt["blink"].max() <= 1
        assert np.all(np.abs(gt["pose"][:, 4]) <= 1)
        left, top, right, bottom = (int(v) for v in row["bbox"].split("-"))
        marks = gt["landmarks"][int(row["start"]) : int(row["end"])]
        assert np.all((marks[..., 0] >= left) & (marks[..., 0] <= right))
        assert np.all((marks[..., 1] >= top) & (marks[..., 1] <= bottom))
        # left = image left, and the nose lies below the eyes, above the mouth
        assert np.all(marks[:, 0, 0] < marks[:, 1, 0]) and np.all(marks[:, 3, 0] < marks[:, 4, 0])
        assert np.all(marks[:, 2, 1] > marks[:, :2, 1].max(1))
        assert np.all(marks[:, 2, 1] < marks[:, 3:, 1].min(1))


def test_mouth_follows_audio_envelope(synth_run, decoded):
    _, _, rows = synth_run
    for video_id, (gt, _, audio) in decoded.items():
        mouth = gt["mouth_open"]
        n = len(mouth)
        assert len(audio) >= n * SAMPLES_PER_FRAME - SAMPLES_PER_FRAME
        audio = np.pad(audio, (0, max(0, n * SAMPLES_PER_FRAME - len(audio))))[: n * SAMPLES_PER_FRAME]
        rms = np.sqrt((audio.reshape(n, SAMPLES_PER_FRAME) ** 2).astype(np.float64).mean(1))
        assert np.corrcoef(rms, mouth)[0, 1] > 0.95
        # pauses are silent and the mouth is shut there
        quiet = rms < 0.02 * rms.max()
        assert quiet.sum() > 5 and mouth[quiet].max() < 0.05
        inside = np.zeros(n, bool)
        for row in (r for r in rows if r["video_id"] == video_id):
            inside[int(row["start"]) : int(row["end"])] = True
            assert mouth[int(row["start"]) : int(row["end"])].max() > 0.5  # every clip talks
        assert mouth[~inside].max() < 0.01  # lead-in, gaps and lead-out are silent


def test_rendered_mouth_is_dark_where_gt_says_open(decoded):
    for gt, images, _ in decoded.values():
        centre = gt["landmarks"][:, 3:5].mean(axis=1)
        mouth = gt["mouth_open"]
        opened = [patch_gray(images[k], *centre[k], radius=2) for k in np.flatnonzero(mouth > 0.6)]
        closed = [patch_gray(images[k], *centre[k], radius=2) for k in np.flatnonzero(mouth == 0)]
        assert opened and closed
        assert np.median(opened) < 50
        assert np.median(closed) > np.median(opened) + 30
        assert np.percentile(closed, 10) > np.percentile(opened, 90)


def test_eyes_are_where_gt_says_and_move_with_pose(decoded):
    for gt, images, _ in decoded.values():
        eyes = gt["landmarks"][:, :2]
        open_frames = np.flatnonzero(gt["blink"] == 0)
        closed_frames = np.flatnonzero(gt["blink"] == 1)
        assert len(open_frames) > 10
        errors = []
        for k in open_frames:
            gray = cv2.cvtColor(images[k], cv2.COLOR_BGR2GRAY).astype(np.float32)
            for x, y in eyes[k]:
                cx, cy = int(round(x)), int(round(y))
                window = gray[cy - 3 : cy + 4, cx - 3 : cx + 4]
                assert window.min() < 60  # a pupil is there
                ys, xs = np.nonzero(window <= window.min() + 15)  # the darkest blob: the pupil
                errors.append(np.hypot(cx - 3 + xs.mean() - x, cy - 3 + ys.mean() - y))
        assert max(errors) < 1.5  # the pupil is centred on the GT eye, within a pixel or so
        # eyes follow the head: their midpoint tracks the pose translation
        middle = eyes.mean(axis=1)
        assert np.ptp(middle[:, 0]) > 3
        assert np.corrcoef(middle[:, 0], gt["pose"][:, 0])[0, 1] > 0.9
        if len(closed_frames):  # the lids cover the pupils during a blink
            shut = np.mean([patch_gray(images[k], *eyes[k, 0]) for k in closed_frames])
            seen = np.mean([patch_gray(images[k], *eyes[k, 0]) for k in open_frames])
            assert shut > seen + 40


def test_identities_look_different(synth_run, decoded):
    _, _, rows = synth_run
    skins = {}
    for row in rows:
        gt, images, _ = decoded[row["video_id"]]
        k = int(row["start"])
        left, right = gt["landmarks"][k, 0], gt["landmarks"][k, 1]
        across = right - left
        up = np.array([across[1], -across[0]])  # perpendicular, towards the forehead
        forehead = (left + right) / 2 + 0.45 * up
        x, y = (int(round(v)) for v in forehead)
        skins[row["person_id"]] = images[k][y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(0)
    people = sorted(skins)
    assert len(people) == TINY["identities"]
    for i, a in enumerate(people):
        for b in people[i + 1 :]:
            assert np.abs(skins[a] - skins[b]).max() > 12, (a, b, skins[a], skins[b])


# --- determinism and errors ---------------------------------------------------------------


def _outputs(out: Path) -> tuple[list[dict], dict]:
    rows = read_csv(out / "vox-metadata.csv")
    for row in rows:
        row.pop("url")
    gts = {r["video_id"]: load_gt(out, r["video_id"]) for r in rows}
    return rows, gts


def test_same_seed_same_outputs_different_seed_differs(tmp_path):
    a, b, c = (tmp_path / name for name in "abc")
    for cwd in (a, b, c):
        cwd.mkdir()
    assert run_cli(a, SMALL).returncode == 0
    (a / "artifacts" / "synth" / "stale.txt").write_text("inside synth's own earlier output")
    assert run_cli(a, SMALL).returncode == 0  # its own output (marked): replaced as a whole
    assert run_cli(b, {**SMALL, "workers": 2}, "--out", "elsewhere").returncode == 0
    assert run_cli(c, {**SMALL, "seed": SMALL["seed"] + 1}).returncode == 0
    assert not (a / "artifacts" / "synth" / "stale.txt").exists()  # the old dir was swapped out
    rows_a, gt_a = _outputs(a / "artifacts" / "synth")
    rows_b, gt_b = _outputs(b / "elsewhere")
    rows_c, gt_c = _outputs(c / "artifacts" / "synth")
    assert rows_a == rows_b
    assert gt_a.keys() == gt_b.keys()
    for video_id in gt_a:
        for key in gt_a[video_id]:
            np.testing.assert_array_equal(gt_a[video_id][key], gt_b[video_id][key])
    assert {r["video_id"] for r in rows_a}.isdisjoint({r["video_id"] for r in rows_c})
    first_a, first_c = next(iter(gt_a.values())), next(iter(gt_c.values()))
    assert not np.array_equal(first_a["pose"], first_c["pose"])


def test_raw_frames_and_audio_are_reproducible():
    cfg = SynthConfig(**SMALL)
    plan = plan_videos(cfg)[1]
    one, two = video_signals(plan, cfg), video_signals(plan, cfg)
    np.testing.assert_array_equal(one.audio, two.audio)
    frames_one = list(frames(one))
    frames_two = list(frames(two))
    assert len(frames_one) == plan.num_frames
    for x, y in zip(frames_one, frames_two):
        np.testing.assert_array_equal(x, y)
    other_cfg = SynthConfig(**{**SMALL, "seed": SMALL["seed"] + 1})
    other = video_signals(plan_videos(other_cfg)[1], other_cfg)
    assert not np.array_equal(next(frames(other)), frames_one[0])
    assert other.audio.shape != one.audio.shape or not np.array_equal(other.audio, one.audio)
    # consecutive frames change (the head moves) but only a little (the motion is smooth)
    steps = [np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(frames_one, frames_one[1:])]
    assert min(steps) > 0 and max(steps) < 10


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"identities": 3, "test_identities": 3}, "test_identities"),
        ({"identities": 2, "test_identities": 5}, "test_identities"),
        ({"width": 641}, "width"),
        ({"min_clip_seconds": 3.0, "max_clip_seconds": 2.0}, "max_clip_seconds"),
        ({"colour": "blue"}, "synth.colour"),
        ({"identities": "ten"}, "synth.identities"),
    ],
)
def test_bad_config_is_one_line_error(tmp_path, section, needle):
    result = run_cli(tmp_path, section)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "params.yaml" in lines[0]
    assert not (tmp_path / "artifacts").exists()


def test_out_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("not a directory")
    result = run_cli(tmp_path, SMALL, "--out", "taken")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --out taken is a file, not a folder; choose another output folder"
    ]
    assert (tmp_path / "taken").read_text() == "not a directory"


def test_help_explains_outputs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipeline", "synth", "--help"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for word in ("--params", "--out", "vox-metadata.csv", "groundtruth"):
        assert word in result.stdout
