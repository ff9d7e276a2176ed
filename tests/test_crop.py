"""The crop stage: real ffmpeg on generated sources, checked frame by frame.

Sources are tiny lavfi videos whose frames are identifiable (testsrc2 with a hue that
turns 29 degrees per frame) and whose audio changes pitch every second, so a wrong
seek, a dropped frame or a misplaced box shows up as a wrong picture or pitch.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from types import SimpleNamespace
import sys
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.crop.geometry import Box, crop_box, scale_box
from pipeline.crop.config import CropConfig
from pipeline.crop.manifest import MANIFEST_COLUMNS, merge_manifest
from pipeline.crop.run import crop_all
from pipeline.crop.table import read_clips
from pipeline.ids import make_clip_id

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _output_helpers import immutable_folder  # noqa: E402

MAIN, BOXV, FPS30, NOAUDIO, GARBAGE, TRUNC, SECTION, MISSING, CUTDATA = (
    "AAAAAAAAAAA", "BBBBBBBBBBB", "CCCCCCCCCCC", "DDDDDDDDDDD", "EEEEEEEEEEE", "FFFFFFFFFFF",
    "GGGGGGGGGGG", "HHHHHHHHHHH", "IIIIIIIIIII",
)
W, H = 640, 360
MAIN_FRAMES = 200  # 8 s at 25 fps
RECT = (200, 100, 80, 80)  # x, y, w, h of the white square in the BOXV source
FACE = (150.0, 20.0, 450.0, 340.0)  # a box in 640x360 units; its crop is downscaled to 256


# ---------------------------------------------------------------- helpers

def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


def identifiable_video(path: Path, seconds: float, rate: int = 25, audio: bool = True) -> None:
    """testsrc2 whose hue turns every frame, audio at 200 + 100 * floor(t) Hz."""
    video = f"testsrc2=size={W}x{H}:rate={rate}:duration={seconds},hue=h=29*n"
    args = ["-f", "lavfi", "-i", video]
    if audio:
        tone = f"aevalsrc=0.5*sin(2*PI*(200+100*floor(t))*t):s=22050:d={seconds}"
        args += ["-f", "lavfi", "-i", tone, "-c:a", "aac", "-b:a", "96k"]
    ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p",
           "-g", "50", str(path))


def decode_rgb(path: Path, *vf: str, width: int = 256, height: int = 256, ss: float | None = None,
               frames: int | None = None) -> np.ndarray:
    """Frames of ``path`` as (N, H, W, 3) uint8 RGB through ffmpeg's rawvideo output."""
    cmd = ["ffmpeg", "-v", "error", "-nostdin"]
    if ss is not None:
        cmd += ["-ss", f"{ss:.6f}"]
    cmd += ["-i", str(path)]
    if vf:
        cmd += ["-vf", ",".join(vf)]
    if frames is not None:
        cmd += ["-frames:v", str(frames)]
    cmd += ["-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
    data = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(data, np.uint8).reshape(-1, height, width, 3)


def source_frames(path: Path, first: int, last: int) -> np.ndarray:
    """Source frames ``first..last`` (inclusive, by decode index) at full size."""
    return decode_rgb(path, f"select=between(n\\,{first}\\,{last})", "setpts=N/TB", width=W, height=H)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def clip_row(video_id: str, start: int, end: int, box=FACE, width: float = W, height: float = H,
             person: str = "id10001", partition: str = "train") -> dict:
    return {
        "clip_id": make_clip_id(person, video_id, start, end), "video_id": video_id,
        "person_id": person, "partition": partition, "start": start, "end": end, "fps": 25.0,
        "left": float(box[0]), "top": float(box[1]), "right": float(box[2]), "bottom": float(box[3]),
        "width": float(width), "height": float(height),
        "url": f"https://www.youtube.com/watch?v={video_id}", "source": "test", "box_clipped": False,
    }


def write_clips(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def config(**kw) -> CropConfig:
    """The stage's config: its defaults, overridden by ``kw``."""
    made = CropConfig(**kw)
    made.validate()
    return made


@dataclass
class Row:
    """One manifest row, read back from the file the stage wrote."""

    status: str
    reason: str
    num_frames: int
    video: str
    audio: str
    crop: Box
    src_width: int
    src_height: int
    settings: str
    clip: SimpleNamespace

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def of(cls, m: dict) -> "Row":
        return cls(m["status"], m["reason"], m["num_frames"], m["video"], m["audio"],
                   Box(m["crop_left"], m["crop_top"], m["crop_right"], m["crop_bottom"]),
                   m["src_width"], m["src_height"], m["settings"],
                   SimpleNamespace(clip_id=m["clip_id"], partition=m["partition"]))


def run_crop(tmp: Path, videos: Path, rows: list[dict], **kw):
    tmp.mkdir(parents=True, exist_ok=True)
    clips = read_clips(write_clips(tmp / "clips.parquet", rows))
    out = tmp / "out"
    report = crop_all(clips, videos, out, config(**kw))
    merge_manifest(out)
    return report, out, {m["clip_id"]: Row.of(m) for m in pq.read_table(out / "manifest.parquet").to_pylist()}


def only(results: dict) -> Row:
    (row,) = results.values()
    return row


def count_frames(path: Path) -> int:
    text = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True,
    ).stdout.strip()
    return int(text)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[np.argmax(spectrum)])


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    identifiable_video(root / f"{MAIN}.mp4", MAIN_FRAMES / 25)
    identifiable_video(root / f"{FPS30}.mp4", 4, rate=30)
    identifiable_video(root / f"{NOAUDIO}.mp4", 2, audio=False)
    x, y, w, h = RECT
    ffmpeg("-f", "lavfi", "-i", f"color=black:size={W}x{H}:rate=25:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=22050:duration=2",
           "-vf", f"drawbox=x={x}:y={y}:w={w}:h={h}:color=white:t=fill",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "10", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", str(root / f"{BOXV}.mp4"))
    (root / f"{GARBAGE}.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    data = (root / f"{MAIN}.mp4").read_bytes()  # moov at the end: cutting it loses the index
    (root / f"{TRUNC}.mp4").write_bytes(data[: len(data) // 2])
    # moov first (faststart), media data cut in half: the index promises frames that are gone
    ffmpeg("-i", str(root / f"{MAIN}.mp4"), "-c", "copy", "-movflags", "+faststart", str(root / "fs.mp4"))
    data = (root / "fs.mp4").read_bytes()
    (root / f"{CUTDATA}.mp4").write_bytes(data[: len(data) // 2])
    (root / "fs.mp4").unlink()
    # sections mode: frames 50..150 of MAIN as their own file
    (root / SECTION).mkdir()
    ffmpeg("-i", str(root / f"{MAIN}.mp4"), "-vf", "trim=start_frame=50:end_frame=150,setpts=PTS-STARTPTS",
           "-af", "atrim=start=2:end=6,asetpts=PTS-STARTPTS", "-c:v", "libx264", "-preset", "ultrafast",
           "-crf", "0", "-c:a", "aac", str(root / SECTION / "000050-000150.mp4"))
    return root


@pytest.fixture(scope="module")
def mixed(videos, tmp_path_factory):
    """One run over good and bad clips: (report, out dir, results by clip id, rows)."""
    rows = {
        "main": clip_row(MAIN, 50, 100),
        "fps30": clip_row(FPS30, 25, 75),
        "section": clip_row(SECTION, 75, 100),
        "garbage": clip_row(GARBAGE, 0, 25),
        "truncated": clip_row(TRUNC, 0, 25),
        "cut_data": clip_row(CUTDATA, 150, 175),
        "cut_data_head": clip_row(CUTDATA, 10, 30),
        "past_end": clip_row(MAIN, MAIN_FRAMES - 20, MAIN_FRAMES + 30),
        "beyond": clip_row(MAIN, MAIN_FRAMES + 100, MAIN_FRAMES + 150),
        "no_audio": clip_row(NOAUDIO, 0, 25),
        "missing": clip_row(MISSING, 0, 25, partition="test"),
    }
    report, out, results = run_crop(tmp_path_factory.mktemp("mixed"), videos, list(rows.values()))
    by_name = {name: results[row["clip_id"]] for name, row in rows.items()}
    return report, out, by_name


# ---------------------------------------------------------------- geometry

def test_scale_box_uses_real_size_and_height_scale_for_unknown_width():
    assert scale_box(Box(400, 200, 560, 360), 1280, 720, 640, 360) == Box(200, 100, 280, 180)
    assert scale_box(Box(400, 200, 560, 360), 0, 720, 640, 360) == Box(200, 100, 280, 180)
    # width 0 on a 4:3 frame: x follows the height's scale, not width/width
    assert scale_box(Box(100, 50, 200, 150), 0, 360, 480, 720) == Box(200, 100, 400, 300)
    assert scale_box(Box(0.25, 0.5, 0.75, 1.0), 1, 1, 640, 360) == Box(160, 180, 480, 360)


def test_crop_box_square_enlarged_shifted_and_shrunk():
    inside = crop_box(Box(100, 50, 200, 200), W, H, square=True, increase_area=0.1)
    assert inside.w == inside.h == 164  # max(100, 150) * 1.1 = 165 -> even
    assert abs(inside.x + inside.w / 2 - 150) <= 2 and abs(inside.y + inside.h / 2 - 125) <= 2
    edge = crop_box(Box(560, 300, 660, 380), W, H, square=True, increase_area=0.2)
    assert edge.w == 120 and edge.x + edge.w == W and edge.y + edge.h == H  # shifted, not shrunk
    huge = crop_box(Box(-50, -50, 700, 500), W, H, square=True, increase_area=0.1)
    assert (huge.w, huge.h, huge.y) == (H, H, 0) and 0 <= huge.x <= W - H
    free = crop_box(Box(100, 100, 200, 150), W, H, square=False, increase_area=0.0)
    assert (free.x, free.y, free.w, free.h) == (100, 100, 100, 50)
    for box in (inside, edge, huge, free):
        assert box.x % 2 == box.y % 2 == box.w % 2 == box.h % 2 == 0


# ---------------------------------------------------------------- media checks

def test_clip_has_exact_frame_count_size_and_rate(mixed):
    report, out, r = mixed
    res = r["main"]
    assert res.status == "ok" and res.reason == ""
    video = out / res.video
    assert res.video == f"train/{res.clip.clip_id}.mp4" and video.is_file()
    assert res.num_frames == 50 == count_frames(video)
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height,r_frame_rate,sample_aspect_ratio", "-of", "csv=p=0",
                            str(video)], capture_output=True, text=True, check=True).stdout.strip()
    assert probe.split(",")[:3] == ["256", "256", "1:1"] and probe.endswith("25/1")
    assert not list((out / "train").glob(".*tmp*")), "temporary files left behind"


def test_first_frame_is_source_frame_start_cropped_and_resized(mixed, videos):
    _, out, r = mixed
    res = r["main"]
    first = decode_rgb(out / res.video, frames=1)[0]
    l, t, rt, b = (int(v) for v in (res.crop.left, res.crop.top, res.crop.right, res.crop.bottom))
    candidates = source_frames(videos / f"{MAIN}.mp4", 49, 51)
    expected = [cv2.resize(np.ascontiguousarray(f[t:b, l:rt]), (256, 256), interpolation=cv2.INTER_AREA)
                for f in candidates]
    before, exact, after = (mad(first, e) for e in expected)
    assert exact < 2.0, f"first frame differs from source frame 50 by {exact:.2f} on average"
    assert exact < before / 4 and exact < after / 4  # and it is not a neighbouring frame


def test_visually_lossless_against_uncompressed_crop(mixed, videos):
    _, out, r = mixed
    res = r["main"]
    l, t = int(res.crop.left), int(res.crop.top)
    w, h = int(res.crop.right) - l, int(res.crop.bottom) - t
    reference = decode_rgb(videos / f"{MAIN}.mp4", "fps=25", f"crop={w}:{h}:{l}:{t}:exact=1",
                           "scale=256:256:flags=area", "format=yuv444p", ss=2.0, frames=50)
    encoded = decode_rgb(out / res.video)
    assert len(reference) == len(encoded) == 50
    worst = min(psnr(a, b) for a, b in zip(encoded, reference))
    assert worst >= 40.0, f"worst frame PSNR {worst:.1f} dB"


def test_wav_is_16k_mono_aligned_with_the_clip(mixed):
    _, out, r = mixed
    res = r["main"]  # frames 50..100 = 2 s .. 4 s: 400 Hz then 500 Hz
    assert res.audio == f"train/{res.clip.clip_id}.wav"
    with wave.open(str(out / res.audio)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() == 16000 * 50 // 25
        samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float64)
    assert abs(dominant_hz(samples[1600:14400], 16000) - 400) < 10
    assert abs(dominant_hz(samples[17600:30400], 16000) - 500) < 10


def test_box_is_scaled_from_metadata_resolution(videos, tmp_path):
    rect = (400, 200, 560, 360)  # the white square, in 1280x720 units
    rows = [clip_row(BOXV, 0, 25, box=rect, width=1280, height=720),
            clip_row(BOXV, 25, 50, box=rect, width=0, height=720)]
    report, out, results = run_crop(tmp_path, videos, rows, increase_area=0.0)
    assert report.ok == 2
    for res in results.values():
        assert (res.src_width, res.src_height) == (W, H)
        assert (res.crop.left, res.crop.top, res.crop.right, res.crop.bottom) == (200, 100, 280, 180)
        frames = decode_rgb(out / res.video)
        assert len(frames) == 25
        inner = frames[:, 8:-8, 8:-8].astype(np.float64)
        assert inner.mean() > 235, "the crop missed the white square"
    # unscaled, the same numbers would land on black
    report, out, results = run_crop(tmp_path / "unscaled", videos, [clip_row(BOXV, 0, 25, box=rect)],
                                    increase_area=0.0)
    assert decode_rgb(out / only(results).video).mean() < 20


def test_30fps_source_is_resampled_to_25fps(mixed, videos):
    _, out, r = mixed
    res = r["fps30"]  # frames 25..75 at 25 fps = 1.0 s .. 3.0 s = source frames 30.. at 30 fps
    assert res.status == "ok" and res.num_frames == 50 == count_frames(out / res.video)
    output = decode_rgb(out / res.video)
    source = source_frames(videos / f"{FPS30}.mp4", 28, 44)
    l, t, rt, b = (int(v) for v in (res.crop.left, res.crop.top, res.crop.right, res.crop.bottom))
    resized = [cv2.resize(np.ascontiguousarray(f[t:b, l:rt]), (256, 256), interpolation=cv2.INTER_AREA)
               for f in source]
    for k, src_frame in ((0, 30), (5, 36), (10, 42)):  # t = 1.0, 1.2, 1.4 s
        best = 28 + int(np.argmin([mad(output[k], e) for e in resized]))
        assert best == src_frame, f"output frame {k} shows source frame {best}, expected {src_frame}"


def test_section_file_is_sought_with_its_offset(mixed, videos):
    _, out, r = mixed
    res = r["section"]  # frame 75 of the video = frame 25 of the section starting at 50
    assert res.status == "ok" and res.num_frames == 25
    first = decode_rgb(out / res.video, frames=1)[0]
    l, t, rt, b = (int(v) for v in (res.crop.left, res.crop.top, res.crop.right, res.crop.bottom))
    source = source_frames(videos / f"{MAIN}.mp4", 74, 76)
    diffs = [mad(first, cv2.resize(np.ascontiguousarray(f[t:b, l:rt]), (256, 256),
                                   interpolation=cv2.INTER_AREA)) for f in source]
    assert int(np.argmin(diffs)) == 1 and diffs[1] < 3.0


# ---------------------------------------------------------------- failures

def test_bad_clips_get_reasons_and_the_rest_succeed(mixed):
    report, out, r = mixed
    expected = {"garbage": "corrupt", "truncated": "corrupt", "cut_data": "corrupt", "past_end": "past_end",
                "beyond": "past_end", "no_audio": "no_audio", "missing": "not_downloaded"}
    for name, reason in expected.items():
        assert (r[name].status, r[name].reason) == ("failed", reason), name
        assert r[name].num_frames == 0 and r[name].video == "" and r[name].audio == ""
        assert not (out / r[name].clip.partition / f"{r[name].clip.clip_id}.mp4").exists()
        assert not (out / r[name].clip.partition / f"{r[name].clip.clip_id}.wav").exists()
    assert {n for n, x in r.items() if x.ok} == {"main", "fps30", "section", "cut_data_head"}
    assert r["cut_data_head"].num_frames == 20  # the intact start of a cut file is still usable
    assert report.failure_counts() == {"corrupt": 3, "past_end": 2, "no_audio": 1, "not_downloaded": 1}
    line = report.summary_line()
    assert line.startswith("crop: 4 ok, 7 failed (corrupt 3, past_end 2, no_audio 1, not_downloaded 1) of 11 clips; ")
    assert f"{50 + 50 + 25 + 20} frames in" in line
    leftovers = [p for p in out.rglob("*") if p.is_file() and "tmp" in p.name]
    assert not leftovers


def test_no_audio_allowed_keeps_video_without_wav(videos, tmp_path):
    report, out, results = run_crop(tmp_path, videos, [clip_row(NOAUDIO, 0, 25)], require_audio=False)
    res = only(results)
    assert (res.status, res.reason, res.audio, res.num_frames) == ("ok", "no_audio", "", 25)
    assert count_frames(out / res.video) == 25
    assert not list(out.rglob("*.wav"))


def test_missing_frames_tolerance_accepts_short_clip_and_trims_audio(videos, tmp_path):
    row = clip_row(MAIN, MAIN_FRAMES - 20, MAIN_FRAMES + 2)  # 2 frames past the end
    report, out, results = run_crop(tmp_path, videos, [row], max_missing_frames=2)
    res = only(results)
    assert res.status == "ok" and res.num_frames == 20 == count_frames(out / res.video)
    with wave.open(str(out / res.audio)) as wav:
        assert wav.getnframes() == 20 * 640


# ---------------------------------------------------------------- command line

def cli(tmp_path: Path, *args: str, params: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params or {"crop": {"workers": 2}}))
    return subprocess.run([sys.executable, "-m", "pipeline", "crop", *args], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_cli_writes_manifest_and_summary(videos, tmp_path):
    write_clips(tmp_path / "clips.parquet",
                [clip_row(MAIN, 0, 25), clip_row(MISSING, 0, 25), clip_row(MAIN, 25, 40, person="id10002",
                                                                            partition="test")])
    result = cli(tmp_path, "clips.parquet", "--videos", str(videos), "--out", "clips")
    assert result.returncode == 0, result.stderr
    assert "crop: 2 ok, 1 failed (not_downloaded 1) of 3 clips; 40 frames in" in result.stdout
    manifest = pd.read_parquet(tmp_path / "clips" / "manifest.parquet")
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert list(manifest["status"]) == ["ok", "failed", "ok"]
    assert list(manifest["num_frames"]) == [25, 0, 15]
    for rel in list(manifest["video"][manifest["status"] == "ok"]) + list(manifest["audio"][manifest["status"] == "ok"]):
        assert (tmp_path / "clips" / rel).is_file()
    assert manifest.loc[2, "video"].startswith("test/id10002#")
    assert (manifest.loc[0, "src_width"], manifest.loc[0, "src_height"]) == (W, H)


def test_cli_exit_1_when_no_clip_succeeds(videos, tmp_path):
    write_clips(tmp_path / "clips.parquet", [clip_row(MISSING, 0, 25), clip_row(GARBAGE, 0, 25)])
    result = cli(tmp_path, "clips.parquet", "--videos", str(videos), "--out", "o")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "0 ok, 2 failed" in errors[0] and "Traceback" not in result.stderr
    assert len(pd.read_parquet(tmp_path / "o" / "manifest.parquet")) == 2


@pytest.mark.parametrize("case", ["missing_table", "bad_param", "bad_row", "missing_column"])
def test_cli_user_errors_are_one_line(videos, tmp_path, case):
    params = None
    args = ["clips.parquet", "--videos", str(videos), "--out", "o"]
    if case == "missing_table":
        expected = "clips table not found"
    elif case == "bad_param":
        write_clips(tmp_path / "clips.parquet", [clip_row(MAIN, 0, 25)])
        params, expected = {"crop": {"increase_area": "big"}}, "crop.increase_area: expected a number"
    elif case == "bad_row":
        row = clip_row(MAIN, 0, 25)
        row["partition"] = "../../etc"
        write_clips(tmp_path / "clips.parquet", [row])
        expected = "row 0: partition '../../etc'"
    else:
        write_clips(tmp_path / "clips.parquet", [{k: v for k, v in clip_row(MAIN, 0, 25).items() if k != "left"}])
        expected = "missing column(s) left"
    result = cli(tmp_path, *args, params=params)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and expected in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()




# ---------------------------------------------------------------- resume, merge, kill

def own_videos(tmp_path: Path, videos: Path, *ids: str) -> Path:
    """A private videos folder holding copies of some sources (so a test may delete them)."""
    own = tmp_path / "videos"
    own.mkdir(exist_ok=True)
    for video_id in ids:
        (own / f"{video_id}.mp4").write_bytes((videos / f"{video_id}.mp4").read_bytes())
    return own


def stamp(path: Path) -> tuple[int, int]:
    return path.stat().st_ino, path.stat().st_mtime_ns


def test_rerun_skips_finished_clips_even_without_their_source(videos, tmp_path):
    own = own_videos(tmp_path, videos, BOXV)
    row = clip_row(BOXV, 0, 10)
    _, out, first = run_crop(tmp_path, own, [row])
    res = only(first)
    video, audio = out / res.video, out / res.audio
    before = stamp(video), stamp(audio)
    (own / f"{BOXV}.mp4").unlink()  # e.g. sources deleted to free disk after cropping
    report, out, again = run_crop(tmp_path, own, [row])
    assert (report.ok, report.already_done, report.frames) == (1, 1, 0)  # nothing encoded
    assert only(again) == res and (stamp(video), stamp(audio)) == before


def test_changed_settings_redo_the_clip_and_a_failed_redo_drops_its_old_files(videos, tmp_path):
    """The choice for "ok before, fails now": only a clip whose settings changed is redone
    (an unchanged one is skipped, see above); if the redo fails, its files made with the
    old settings go and its row says why, so the folder never holds a crop the manifest
    does not describe. Other clips' rows and files are untouched."""
    own = own_videos(tmp_path, videos, BOXV, MAIN)
    rows = [clip_row(BOXV, 0, 10), clip_row(MAIN, 0, 10)]
    _, out, first = run_crop(tmp_path, own, rows)
    boxv, main = (first[r["clip_id"]] for r in rows)
    main_stamp = stamp(out / main.video)
    report, out, second = run_crop(tmp_path, own, rows, increase_area=0.3)
    assert report.already_done == 0 and second[boxv.clip.clip_id].settings != boxv.settings
    assert second[boxv.clip.clip_id].crop.right - second[boxv.clip.clip_id].crop.left > boxv.crop.right - boxv.crop.left
    (own / f"{BOXV}.mp4").unlink()
    report, out, third = run_crop(tmp_path, own, rows[:1], increase_area=0.1)
    failed = third[boxv.clip.clip_id]
    assert (failed.status, failed.reason) == ("failed", "not_downloaded")
    assert not (out / boxv.video).exists() and not (out / boxv.audio).exists()
    assert third[main.clip.clip_id] == second[main.clip.clip_id]  # not in this table: kept as it was
    assert (out / main.video).is_file() and stamp(out / main.video) != main_stamp  # (redone at 0.3)


def test_box_entirely_outside_the_frame_is_rejected(videos, tmp_path):
    rows = [clip_row(MAIN, 0, 10, box=(700, 20, 900, 300)),  # right of a 640-wide frame
            clip_row(MAIN, 10, 20, box=(800, 20, 1000, 300), width=0, height=H),  # unknown width
            clip_row(MAIN, 20, 30, box=(100, -400, 300, -10)),  # above the frame
            clip_row(MAIN, 30, 40, box=(600, 300, 700, 400))]  # partly inside: clamped and kept
    report, out, results = run_crop(tmp_path, videos, rows)
    reasons = [results[r["clip_id"]].reason for r in rows]
    assert reasons == ["outside_frame"] * 3 + [""]
    assert report.failure_counts() == {"outside_frame": 3}
    assert not list(out.rglob("*#00000*#0000[123]0.mp4"))


def test_cli_failing_table_never_drops_earlier_good_clips(videos, tmp_path):
    good = [clip_row(MAIN, 0, 10), clip_row(MAIN, 10, 20), clip_row(MAIN, 20, 30)]
    write_clips(tmp_path / "good.parquet", good)
    assert cli(tmp_path, "good.parquet", "--videos", str(videos), "--out", "clips").returncode == 0
    files = {p: stamp(p) for p in (tmp_path / "clips").rglob("*.mp4")}
    write_clips(tmp_path / "bad.parquet", [clip_row(MISSING, 0, 25)])
    result = cli(tmp_path, "bad.parquet", "--videos", str(videos), "--out", "clips")
    assert result.returncode == 1 and "0 ok, 1 failed (not_downloaded 1) of 1 clips" in result.stderr
    assert "also keeps 3 clips of earlier runs that bad.parquet does not list" in result.stdout
    manifest = pd.read_parquet(tmp_path / "clips" / "manifest.parquet")
    assert sorted(manifest["status"]) == ["failed", "ok", "ok", "ok"]
    assert {p: stamp(p) for p in (tmp_path / "clips").rglob("*.mp4")} == files  # nothing lost or redone
    from pipeline.shard.manifest import Manifest
    manifest = Manifest(tmp_path / "clips")  # the next stage still takes the folder
    assert len(manifest) == 3 and manifest.skipped == 1


def journal_lines(out: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in out.glob(".manifest.parts/*.jsonl"))


def temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if ".tmp" in p.name]


def kill_after_journal_lines(proc: subprocess.Popen, out: Path, lines: int) -> None:
    """SIGKILL the crop ``proc`` once ``lines`` clips are journalled in ``out`` and the next
    clip's temporaries exist (so the kill lands mid-clip, not between two clips)."""
    try:
        deadline = time.monotonic() + 60
        while journal_lines(out) < lines or not temporaries(out):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, f"fewer than {lines} clips finished in 60 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_sigkill_then_rerun_redoes_only_the_clips_in_flight(videos, tmp_path):
    rows = [clip_row(MAIN, start, start + 15) for start in range(0, 180, 15)]  # 12 clips
    write_clips(tmp_path / "clips.parquet", rows)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"crop": {"workers": 1}}))
    out = tmp_path / "clips"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "crop", "clips.parquet", "--videos", str(videos),
                             "--out", "clips"], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_journal_lines(proc, out, 3)
    done = journal_lines(out)
    assert done < len(rows), "the run finished before the kill"
    assert temporaries(out), "expected the killed clip's temporaries"
    journalled = pd.concat([pd.read_json(p, lines=True) for p in out.glob(".manifest.parts/*.jsonl")])
    finished = {out / v: stamp(out / v) for v in journalled["video"]}
    # Final names only for journalled clips (plus, at most, the one renamed just before the kill).
    assert len(finished) <= len([p for p in out.rglob("[!.]*.mp4")]) <= done + 1
    rerun = cli(tmp_path, "clips.parquet", "--videos", str(videos), "--out", "clips", params={"crop": {"workers": 1}})
    assert rerun.returncode == 0, rerun.stderr
    # Every clip whose row was written is skipped: only the one in flight and the unstarted run.
    assert f"crop: 12 ok ({done} already done), 0 failed of 12 clips; {(12 - done) * 15} frames in" in rerun.stdout
    assert all(stamp(p) == s for p, s in finished.items())
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name], "stale temporaries survived the re-run"
    assert not (out / ".manifest.parts").exists()
    assert len(pd.read_parquet(out / "manifest.parquet")) == 12


def test_cli_parts_share_the_table_and_merge_writes_the_manifest(videos, tmp_path):
    ids = [MAIN, FPS30, BOXV, NOAUDIO, SECTION]
    rows = [clip_row(v, 50 + k, 60 + k) for v in ids for k in (0, 10)]
    write_clips(tmp_path / "clips.parquet", rows)
    args = ("clips.parquet", "--videos", str(videos), "--out", "clips")
    first = cli(tmp_path, *args, "--part", "1/2")
    assert first.returncode in (0, 1), first.stderr
    assert not (tmp_path / "clips" / "manifest.parquet").exists()  # parts never write it
    early = cli(tmp_path, *args, "--merge")
    assert early.returncode == 1 and "clips of clips.parquet have no result yet" in early.stderr
    second = cli(tmp_path, *args, "--part", "2/2")
    assert second.returncode in (0, 1), second.stderr
    counts = [int(re.search(r"of (\d+) clips", r.stdout + r.stderr).group(1)) for r in (first, second)]
    assert sum(counts) == len(rows) and all(counts)
    merged = cli(tmp_path, *args, "--merge")
    assert merged.returncode == 0, merged.stderr
    manifest = pd.read_parquet(tmp_path / "clips" / "manifest.parquet")
    assert sorted(manifest["clip_id"]) == sorted(r["clip_id"] for r in rows)
    assert list(manifest["clip_id"]) == sorted(manifest["clip_id"])
    for video_id, group in manifest.groupby("video_id"):  # one video's clips on one machine
        assert len(group) == 2
    assert cli(tmp_path, *args, "--part", "3/2").returncode == 2


@pytest.mark.parametrize("case", ["proc", "file_as_folder", "input_inside", "foreign_folder", "immutable"])
def test_cli_refuses_a_bad_out_before_any_work(videos, tmp_path, case):
    write_clips(tmp_path / "clips.parquet", [clip_row(MAIN, 0, 10)])
    (tmp_path / "afile").write_text("x")
    out, expected = {
        "proc": ("/proc/fomm-crop-out", "cannot write in /proc"),
        "file_as_folder": ("afile/clips", "is a file, not a folder"),
        "input_inside": (".", "contains the input"),
        "foreign_folder": ("mine", "already holds 'PRECIOUS.txt'"),
        "immutable": ("locked", "cannot write in"),
    }[case]
    if case == "foreign_folder":
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "PRECIOUS.txt").write_text("keep me")
    with immutable_folder(tmp_path / "locked") if case == "immutable" else contextlib.nullcontext():
        result = cli(tmp_path, "clips.parquet", "--videos", str(videos), "--out", out)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and expected in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.mp4")) and not list(tmp_path.rglob("manifest.parquet"))


@pytest.mark.parametrize("video_id", ["-oProxyComm", "-i_________", "--exec_____"])
def test_ids_that_read_as_options_are_refused(videos, tmp_path, video_id):
    row = clip_row(MAIN, 0, 10)
    row.update(video_id=video_id, clip_id=f"id10001#{video_id}#000000#000010")
    write_clips(tmp_path / "clips.parquet", [row])
    result = cli(tmp_path, "clips.parquet", "--videos", str(videos), "--out", "clips")
    assert result.returncode == 2 and f"video_id {video_id!r} is not 11 characters" in result.stderr
    assert "not starting with '-'" in result.stderr and not (tmp_path / "clips").exists()


def test_tool_paths_are_absolute_even_for_relative_names(tmp_path, monkeypatch):
    """A file really named like an option is read as a file: every path reaches ffmpeg absolute."""
    from pipeline.crop.ffmpeg_job import CropJob, EncodeSettings, build_command
    from pipeline.crop.geometry import PixelBox
    from pipeline.crop.probe import probe

    monkeypatch.chdir(tmp_path)
    identifiable_video(tmp_path / "src.mp4", 0.4)
    (tmp_path / "src.mp4").rename(tmp_path / "-i")
    assert probe(Path("-i")).width == W  # ffprobe got /abs/-i, not the option -i
    cmd = build_command(CropJob(Path("-i"), 0.0, 5, PixelBox(0, 0, 100, 100), True), EncodeSettings(),
                        Path("-y.mp4"), Path("-f.wav"))
    assert cmd[cmd.index("-i") + 1] == str(tmp_path / "-i")
    for name in ("-y.mp4", "-f.wav"):
        assert str(tmp_path / name) in cmd and name not in cmd


def test_dvc_status_is_clean_after_a_killed_crop_and_a_rerun(videos, tmp_path):
    """kill -9 leaves hidden temporaries; the DVC re-run removes them, resumes, and the
    output it records is the folder as it stays (no `artifacts/clips modified` later)."""
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
        return done

    own_videos(tmp_path, videos, MAIN)
    write_clips(tmp_path / "clips.parquet", [clip_row(MAIN, s, s + 15) for s in range(0, 150, 15)])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"crop": {"workers": 1}}))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"crop": {
        "cmd": "fomm crop clips.parquet --videos videos --out clips",
        "deps": ["clips.parquet", "videos"], "params": ["crop"],
        "outs": [{"clips": {"persist": True}}]}}}))
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    proc = subprocess.Popen([str(venv_bin / "fomm"), "crop", "clips.parquet", "--videos", "videos", "--out", "clips"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_journal_lines(proc, tmp_path / "clips", 2)
    assert temporaries(tmp_path / "clips")
    repro = run("dvc", "repro", "crop")
    assert "already done" in repro.stdout
    assert not [p for p in (tmp_path / "clips").rglob(".*") if ".tmp" in p.name or p.name.endswith(".parts")]
    assert "Data and pipelines are up to date" in run("dvc", "status").stdout
    assert "up to date" in run("dvc", "repro", "crop").stdout.lower()


def test_shard_refuses_option_like_ids_in_a_manifest(tmp_path):
    """Upstream of shard: a (hand-edited) manifest row with such an id never becomes a path."""
    from fomm_core.errors import FommError
    from pipeline.shard.manifest import Manifest

    row = clip_row(MAIN, 0, 10)
    for video_id in ("-oProxyComm", "--exec_____"):
        clip_id = f"id10001#{video_id}#000000#000010"
        manifest = {**{k: [v] for k, v in row.items() if k in MANIFEST_COLUMNS}, "video_id": [video_id],
                    "clip_id": [clip_id], "status": ["ok"], "reason": [""], "num_frames": [10], "fps": [25.0],
                    "video": [f"train/{clip_id}.mp4"], "audio": [""], "crop_left": [0.0], "crop_top": [0.0],
                    "crop_right": [10.0], "crop_bottom": [10.0], "src_width": [W], "src_height": [H],
                    "settings": [""]}
        (tmp_path / "clips").mkdir(exist_ok=True)
        pd.DataFrame(manifest).to_parquet(tmp_path / "clips" / "manifest.parquet")
        with pytest.raises(FommError, match="not of the form|not 11 characters|not starting|bad person or video id"):
            Manifest(tmp_path / "clips")


@pytest.mark.parametrize("column, value", [("end", 1e30), ("start", 2.0**70), ("end", 2**63 - 1)])
def test_frame_numbers_past_int64_are_one_line(videos, tmp_path, column, value):
    row = clip_row(MAIN, 0, 10)
    row[column] = value
    write_clips(tmp_path / "clips.parquet", [clip_row(MAIN, 10, 20), row])
    result = cli(tmp_path, "clips.parquet", "--videos", str(videos), "--out", "clips")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"clips.parquet row 1 {column}: expected a whole frame number from 0 to 1000000000" in result.stderr
