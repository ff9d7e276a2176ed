"""Id validation, path safety and atomic writes: the guards every stage relies on."""

import os

import pytest

from fomm_core.atomic import atomic_dir, atomic_path, write_text_atomic
from fomm_core.errors import FommError
from pipeline.ids import is_video_id, make_clip_id, parse_clip_id, safe_join
from pipeline.video_files import find_source, section_path, whole_video_path


@pytest.mark.parametrize("vid", ["WMh3ye5tBsE", "na8-QEFmj44", "_abcdefghij"])
def test_valid_video_ids(vid):
    assert is_video_id(vid)


@pytest.mark.parametrize(
    "vid", ["../../etc/pa", "a;rm -rf /x", "$(reboot)xx", "short", "WMh3ye5tBsE1", "WMh3ye5tBs\u0415", "", None, 12345678901]
)
def test_hostile_video_ids(vid):
    assert not is_video_id(vid)


def test_clip_id_round_trip():
    clip = make_clip_id("id10005", "WMh3ye5tBsE", 3657, 3994)
    assert clip == "id10005#WMh3ye5tBsE#003657#003994"
    assert parse_clip_id(clip) == ("id10005", "WMh3ye5tBsE", 3657, 3994)
    with pytest.raises(FommError):
        make_clip_id("id10005", "../../../etc", 1, 2)
    with pytest.raises(FommError):
        parse_clip_id("id10005#x#1#2")


@pytest.mark.parametrize("part", ["../x", "/etc/passwd", "a/../../b", ""])
def test_safe_join_refuses_escape(tmp_path, part):
    with pytest.raises(FommError):
        safe_join(tmp_path, part)


def test_safe_join_refuses_symlink_escape(tmp_path):
    (tmp_path / "out").mkdir()
    os.symlink("/etc", tmp_path / "out" / "link")
    with pytest.raises(FommError):
        safe_join(tmp_path / "out", "link", "passwd")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "a").iterdir()) == []
    write_text_atomic(target, "whole")
    assert target.read_text() == "whole"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == target.parent
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_replaces_whole_directory(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "one").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "two").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["one"]
    with atomic_dir(target) as tmp:
        (tmp / "three").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["three"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_find_source_whole_and_sections(tmp_path):
    vid = "WMh3ye5tBsE"
    assert find_source(tmp_path, vid, 0, 10) is None
    section = section_path(tmp_path, vid, 100, 200)
    section.parent.mkdir()
    section.write_bytes(b"x")
    found = find_source(tmp_path, vid, 120, 200)
    assert found.path == section and found.offset_seconds == pytest.approx(4.0)
    assert find_source(tmp_path, vid, 90, 150) is None
    whole_video_path(tmp_path, vid).write_bytes(b"x")
    assert find_source(tmp_path, vid, 90, 150).offset_seconds == 0.0
    assert find_source(tmp_path, "../../etc/x", 0, 1) is None


def test_non_ascii_digits_are_not_ids():
    from pipeline.ids import is_person_id

    assert is_person_id("id10001")
    assert not is_person_id("id1000\u0661")
    with pytest.raises(FommError):
        parse_clip_id("id10005#WMh3ye5tBsE#00365\u0667#003994")


def test_atomic_outputs_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("vid", ["-oProxyComm", "-i_________", "--exec_____"])
def test_video_ids_may_not_start_with_a_dash(vid):
    """Such a name reads as an option to ffmpeg, ffprobe, yt-dlp or a shell."""
    assert len(vid) == 11 and not is_video_id(vid)
    with pytest.raises(FommError, match="not starting with '-'"):
        make_clip_id("id10001", vid, 0, 10)
    with pytest.raises(FommError):
        parse_clip_id(f"id10001#{vid}#000000#000010")
