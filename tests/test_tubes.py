"""``fomm tubes`` end to end on real videos: VoxCeleb2-style txt input, own videos, resuming.

Videos are rendered with the project's synthetic heads (detectable by dlib) and encoded by
ffmpeg; metadata, tubes and the tables are the real stages run through the CLI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.synth.face import FaceModel
from pipeline.synth.identity import make_style

from _face_helpers import draw, write_video
from _inference_helpers import run_cli

W, H = 640, 360
VIDEO_ID = "moveHead001"
PERSON = "id00012"
FRAMES = 150


def head_x(k: int) -> float:
    return 140 + (500 - 140) * k / (FRAMES - 1)  # left to right across the frame in 6 s


@pytest.fixture(scope="module")
def vox2(tmp_path_factory) -> Path:
    """A VoxCeleb2-style txt tree (fractions) tracking a moving head, and its downloaded video."""
    root = tmp_path_factory.mktemp("vox2")
    write_video(root / "videos" / f"{VIDEO_ID}.mp4", [draw(W, H, [(3, head_x(k), 180, 1.0)]) for k in range(FRAMES)])
    model = FaceModel(make_style(np.random.default_rng(3), 3), H)
    rows = []
    for k in range(FRAMES):
        left, top, right, bottom = model.face_box(np.array([head_x(k), 180, 0.0, 1.0, 0.0], np.float32))
        rows.append(f"{k:06d} \t{left / W:.3f} \t{top / H:.3f} \t{(right - left) / W:.3f} \t{(bottom - top) / H:.3f} ")
    folder = root / "txt" / PERSON / VIDEO_ID
    folder.mkdir(parents=True)
    header = f"Identity  : \t{PERSON}\nReference : \t{VIDEO_ID}\nOffset    : \t1\nFV Conf   : \t16.6\t(1)\nASD Conf  : \t4.4\n\n"
    (folder / "00001.txt").write_text(header + "FRAME \tX \tY \tW \tH \n" + "\n".join(rows) + "\n")
    (root / "params.yaml").write_text("tubes:\n  min_frames: 20\n  min_size: 40\n  increase_area: 0.0\n  workers: 1\n")
    run_cli(["metadata", "txt", "--out", "meta/clips.parquet"], root)
    return root


def test_a_moving_head_gives_several_tight_tubes_not_one_loose_box(vox2):
    result = run_cli(["tubes", "meta/clips.parquet", "--videos", "videos", "--input", "txt", "--out", "tubes"], vox2)
    assert "tubes:" in result.stdout
    [utterance] = pd.read_parquet(vox2 / "meta/clips.parquet").itertuples()
    union_width = (utterance.right - utterance.left) * W
    tubes = pd.read_parquet(vox2 / "tubes/clips.parquet")
    assert len(tubes) >= 3, tubes
    assert (tubes["right"] - tubes["left"]).max() < 0.5 * union_width  # each much tighter than the union
    assert tubes["start"].iloc[0] == 0
    assert (tubes["start"].iloc[1:].values == tubes["end"].iloc[:-1].values).all()  # contiguous cuts
    rejects = pd.read_parquet(vox2 / "tubes/rejects.parquet")  # the rest of the track, too short for a tube
    assert list(rejects["reason"]) == ["too_short"] and rejects["end"].iloc[0] == FRAMES
    assert rejects["start"].iloc[0] == tubes["end"].iloc[-1]
    assert set(tubes["partition"]) == {"train"} and (tubes["width"] == W).all() and (tubes["height"] == H).all()
    for tube in tubes.itertuples():  # the head is inside its tube's box at the tube's middle frame
        middle = head_x((tube.start + tube.end) // 2)
        assert tube.left < middle < tube.right
    # crop reads the table as is
    run_cli(["crop", "tubes/clips.parquet", "--videos", "videos", "--out", "clips"], vox2)
    manifest = pd.read_parquet(vox2 / "clips/manifest.parquet")
    assert (manifest["status"] == "ok").all() and len(manifest) == len(tubes)


def test_official_test_split_for_txt_inputs(tmp_path, vox2):
    from pipeline.metadata.build import build
    from pipeline.metadata.config import MetadataConfig

    text = (vox2 / "txt" / PERSON / VIDEO_ID / "00001.txt").read_text()
    for folder, person in (("test", PERSON), ("dev", "id10270"), ("dev", "id10001")):
        target = tmp_path / folder / "txt" / person / VIDEO_ID / "00001.txt"
        target.parent.mkdir(parents=True)
        target.write_text(text.replace(PERSON, person))

    def partitions(path: Path, **settings) -> dict[str, str]:
        return {c.person_id: c.partition for c in build([path], MetadataConfig(min_frames=1, **settings)).clips}

    assert partitions(tmp_path / "test") == {PERSON: "test"}  # the official test folder
    assert partitions(tmp_path / "dev") == {"id10270": "test", "id10001": "train"}  # VoxCeleb1's test identities
    assert partitions(tmp_path / "dev", official_test_split=False) == {"id10270": "train", "id10001": "train"}
    zipped = tmp_path / "vox2_test_txt.zip"
    import zipfile

    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(f"txt/id10001/{VIDEO_ID}/00001.txt", text.replace(PERSON, "id10001"))
    assert partitions(zipped) == {"id10001": "test"}


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """Own videos, no metadata: two people in folders (one with two videos) and a loose video."""
    root = tmp_path_factory.mktemp("own")
    specs = {"alice/hello.mp4": (1, 250), "alice/again.mp4": (1, 380), "bob/talk.mp4": (6, 320),
             "carol.mp4": (8, 300)}
    for name, (identity, x) in specs.items():
        frames = [draw(W, H, [(identity, x + 20 * np.sin(k / 10), 180, 1.0)], seed=identity) for k in range(60)]
        write_video(root / "videos_in" / name, frames)
    (root / "params.yaml").write_text("download:\n  allow_file_urls: true\ntubes:\n  min_frames: 20\n"
                                      "  min_size: 40\n  workers: 1\n")
    run_cli(["metadata", "videos_in", "--out", "meta/clips.parquet"], root)
    run_cli(["download", "meta/clips.parquet", "--out", "videos"], root)
    return root


def test_own_videos_become_clips_with_person_ids_from_folders(own):
    clips = pd.read_parquet(own / "meta/clips.parquet")
    assert len(clips) == 4 and clips["video_id"].str.startswith("own").all()
    people = clips.groupby("person_id")["source"].apply(lambda s: sorted(Path(p).parent.name for p in s))
    assert sorted(map(tuple, people)) == [("alice", "alice"), ("bob",), ("videos_in",)]
    test = clips[clips["partition"] == "test"]
    assert list(test["source"].str.endswith("carol.mp4")) == [True]  # the last person is the test set
    assert (clips["start"] == 0).all() and (clips["end"] == 60).all() and (clips["width"] == W).all()


def test_own_videos_tubes_run_in_parallel_and_resume_after_a_kill(own):
    args = ["tubes", "meta/clips.parquet", "--videos", "videos", "--input", "videos_in", "--out"]
    run_cli(args + ["clean"], own)
    clean = pd.read_parquet(own / "clean/clips.parquet")
    assert len(clean) == 4 and set(clean["person_id"]) == set(pd.read_parquet(own / "meta/clips.parquet")["person_id"])
    assert (clean["end"] - clean["start"] >= 55).all()

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args, "killed"], cwd=own, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = own / "killed" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(parts.glob("*/*.clips.parquet"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("*/*.clips.parquet")))
    assert 1 <= done_before < 4, "the kill should land between two videos"
    assert not (own / "killed/clips.parquet").exists()
    result = run_cli(args + ["killed"], own)
    assert f"({done_before} resumed)" in result.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(own / "killed/clips.parquet"), clean)
    again = run_cli(args + ["killed"], own)  # everything reused, nothing detected
    assert "(4 resumed)" in again.stdout and "0 frames detected" in again.stdout


def test_tubes_errors_are_one_line(own):
    cases = [
        (["tubes", "meta/clips.parquet", "--videos", "videos", "--out", "x"], "--input"),
        (["tubes", "meta/clips.parquet", "--videos", "nowhere", "--input", "videos_in", "--out", "x"], "not found"),
        (["tubes", "meta/clips.parquet", "--videos", "videos", "--input", "videos_in", "--out", "videos_in"], "input"),
    ]
    for args, message in cases:
        result = run_cli(args, own, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_find_crops_lists_tracks_and_writes_animate_commands(own):
    result = run_cli(["find-crops", "videos_in/bob/talk.mp4", "--source", "me.png", "--out", "commands.sh"], own)
    assert "track 1: 0.00-2.40 s" in result.stdout
    lines = (own / "commands.sh").read_text().splitlines()
    assert lines[0].startswith("# fomm find-crops") and len(lines) == 2
    command = lines[1].split()
    assert command[:2] == ["fomm", "animate"] and "--crop-box" in command
    left, top, right, bottom = map(int, command[command.index("--crop-box") + 1].split(","))
    assert right - left == bottom - top and left < 320 < right  # a square around bob's head (x ~ 320)


def test_relative_urls_are_re_anchored_on_the_tubes_table(tmp_path):
    """A url relative to the metadata table stays valid in the tubes table (pipeline/local_urls.py)."""
    from pipeline.tubes.run import rebased_urls

    urls = pd.Series(["../synth/videos/a.mp4", "https://www.youtube.com/watch?v=abcdefghijk", "../synth/videos/a.mp4"])
    moved = rebased_urls(urls, tmp_path / "artifacts" / "metadata", tmp_path / "artifacts" / "tubes" / "sub")
    assert list(moved) == ["../../synth/videos/a.mp4", "https://www.youtube.com/watch?v=abcdefghijk",
                           "../../synth/videos/a.mp4"]
