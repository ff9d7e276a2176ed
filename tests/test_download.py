"""The download stage against a real loopback HTTP server, real yt-dlp and real ffmpeg."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
import yt_dlp
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

from fomm_core.errors import FommError
from pipeline.download.archive import Archive
from pipeline.download.config import DownloadConfig
from pipeline.download.errors import PERMANENT, TRANSIENT, classify
from pipeline.download.jobs import plan_jobs
from pipeline.download.report import SCHEMA, load_rows
from pipeline.download.retry import Backoff, with_retries
from pipeline.download.runner import run_download
from pipeline.download.ytdlp_options import YtdlpLogger, build_params, format_selector
from pipeline.video_files import find_source, section_path, whole_video_path

sys.path.insert(0, str(Path(__file__).parent))
from _download_helpers import CUT, DROP, STALL, LoopbackServer, make_fixture_mp4, probe_duration  # noqa: E402
from _output_helpers import immutable_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = dict(backoff_base=0.01, backoff_max=0.05, jitter=0.0, ytdlp_retries=0, socket_timeout=5.0)


@pytest.fixture(scope="session")
def video_bytes(tmp_path_factory) -> bytes:
    """A 3 s 640x360 25 fps H.264 + AAC mp4, built once."""
    path = make_fixture_mp4(tmp_path_factory.mktemp("fixture") / "source.mp4", seconds=3)
    return path.read_bytes()


@pytest.fixture
def server():
    with LoopbackServer() as srv:
        yield srv


def vid(name: str) -> str:
    """An 11-character video id made from a readable name."""
    return (name + "_" * 11)[:11]


def write_clips(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows, columns=["video_id", "url", "start", "end"]).to_parquet(path)
    return path


def read_report(out: Path) -> dict[str, dict]:
    table = pd.read_parquet(out / "report.parquet")
    assert list(table.columns) == SCHEMA.names
    return {row["video_id"]: row for row in table.to_dict("records")}


def run_cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "download", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def journal_rows(out: Path) -> dict[str, dict]:
    """The rows a (possibly killed) run has journalled so far, report.parquet included."""
    if not out.is_dir():
        return {}
    return {k: dict(v) for k, v in load_rows(out).to_dict("index").items()}


def nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:  # renamed away meanwhile
        return False


def write_params(path: Path, **download) -> Path:
    path.write_text(yaml.safe_dump({"download": download, "crop": {"size": 256}}))
    return path


# ---------------------------------------------------------------- whole mode, every outcome


def test_whole_mode_statuses_reasons_and_retries(tmp_path, server, video_bytes):
    scripts = {
        "ok": [],
        "gone404": [404],
        "gone410": [410],
        "busy503": [503, 503],
        "slow429": [429],
        "dropped": [DROP],
        "cut": ["ok", CUT],  # sniff succeeds, the transfer is cut half way
        "down503": [503] * 10,
        "stalled": [STALL] * 3,
    }
    rows = []
    for name, script in scripts.items():
        url = server.add(f"/{name}.mp4", video_bytes, script=script, retry_after=0, stall_s=1.5)
        rows += [{"video_id": vid(name), "url": url, "start": 0, "end": 25},
                 {"video_id": vid(name), "url": url, "start": 25, "end": 50}]
    clips = write_clips(tmp_path / "clips.parquet", rows)
    out = tmp_path / "videos"
    config = DownloadConfig(retries=2, workers=3, **{**FAST, "socket_timeout": 0.5})
    result = run_download(config, clips, out, show_progress=False)

    report = read_report(out)
    assert [r.video_id for r in result.rows] == [vid(n) for n in scripts]  # input order
    expect = {
        "ok": ("ok", "", 1), "gone404": ("skipped", "http_404", 1), "gone410": ("skipped", "http_410", 1),
        "busy503": ("ok", "", 3), "slow429": ("ok", "", 2), "dropped": ("ok", "", 2), "cut": ("ok", "", 2),
        "down503": ("failed", "http_5xx", 3), "stalled": ("failed", "timeout", 3),
    }
    for name, (status, reason, attempts) in expect.items():
        row = report[vid(name)]
        assert (row["status"], row["reason"], row["attempts"]) == (status, reason, attempts), name
        final = whole_video_path(out, vid(name))
        if status == "ok":
            assert final.read_bytes() == video_bytes, name  # complete, byte for byte (cut one resumed)
            assert row["bytes"] == len(video_bytes) and row["error"] == ""
        else:
            assert not final.exists() and row["bytes"] == 0 and row["error"], name

    # Permanent failures are not retried: one request each. Failed ones used every retry.
    assert server.requests("/gone404.mp4") == 1 and server.requests("/gone410.mp4") == 1
    assert server.requests("/down503.mp4") == 3
    # The generic extractor GETs once to sniff the type, then once to download.
    assert server.requests("/ok.mp4", "GET") == 2
    assert server.requests("/busy503.mp4") == 2 + 2
    # The cut transfer resumed from its .part file with a Range request.
    assert [a for m, p, a in server.log if p == "/cut.mp4"] == ["ok", "cut", "ok", "ok"]

    archive = Archive(out / "archive.txt").entries()
    assert archive == {f"generic {name}" for name, (status, _, _) in expect.items() if status == "ok"}
    assert not any(p.name.endswith((".part", ".tmp")) for p in out.iterdir())


def test_resume_skips_finished_videos_and_keeps_their_rows(tmp_path, server, video_bytes):
    urls = {name: server.add(f"/{name}.mp4", video_bytes, script=script)
            for name, script in {"first": [], "second": [503, 503, 503]}.items()}
    clips = write_clips(tmp_path / "clips.parquet",
                        [{"video_id": vid(n), "url": u, "start": 0, "end": 25} for n, u in urls.items()])
    out = tmp_path / "videos"
    first = run_download(DownloadConfig(retries=1, **FAST), clips, out, show_progress=False)
    assert [r.status for r in first.rows] == ["ok", "failed"]
    before = read_report(out)
    requests_first = server.requests("/first.mp4")

    second = run_download(DownloadConfig(retries=1, **FAST), clips, out, show_progress=False)
    after = read_report(out)
    assert server.requests("/first.mp4") == requests_first  # finished: not requested again
    assert after[vid("first")] == before[vid("first")]  # its row, attempts included, kept
    assert after[vid("second")]["status"] == "ok" and after[vid("second")]["attempts"] == 2
    assert second.already_done == 1 and second.new_bytes == len(video_bytes)
    assert sorted(Archive(out / "archive.txt").entries()) == ["generic first", "generic second"]


def test_rerun_over_finished_and_permanently_failed_videos_makes_no_request(tmp_path, server, video_bytes):
    scripts = {"fine": [], "gone": [404] * 10, "flaky": [503]}
    urls = {name: server.add(f"/{name}.mp4", video_bytes, script=script) for name, script in scripts.items()}
    urls["private"] = server.add("/private.mp4", video_bytes, script=[410] * 10)
    clips = write_clips(tmp_path / "clips.parquet",
                        [{"video_id": vid(n), "url": u, "start": 0, "end": 25} for n, u in urls.items()])
    out = tmp_path / "videos"
    first = run_download(DownloadConfig(retries=0, **FAST), clips, out, show_progress=False)
    assert [(r.status, r.reason) for r in first.rows] == [
        ("ok", ""), ("skipped", "http_404"), ("failed", "http_5xx"), ("skipped", "http_410")]
    before = read_report(out)
    assert not list(out.glob(".report.parts/*"))  # merged into report.parquet and removed

    # The transient failure is retried; the finished and the permanently failed are not.
    server.log.clear()
    second = run_download(DownloadConfig(retries=0, **FAST), clips, out, show_progress=False)
    assert {p for _, p, _ in server.log} == {"/flaky.mp4"}
    assert second.not_retried == 2 and second.already_done == 1
    after = read_report(out)
    for name in ("fine", "gone", "private"):
        assert after[vid(name)] == before[vid(name)], name  # rows kept as they were

    # Everything settled: a third run makes no request at all.
    server.log.clear()
    third = run_download(DownloadConfig(retries=0, **FAST), clips, out, show_progress=False)
    assert server.log == [] and third.already_done == 2 and third.not_retried == 2

    # Asked to, the permanent failures are tried again (once each: still permanent).
    fourth = run_download(DownloadConfig(retries=3, retry_failed=True, **FAST), clips, out, show_progress=False)
    assert {p for _, p, _ in server.log} == {"/gone.mp4", "/private.mp4"}
    assert server.requests("/gone.mp4") == 1 and fourth.not_retried == 0
    # A new URL for a given-up video is a new chance, without being asked.
    moved = server.add("/moved.mp4", video_bytes)
    rows = [{"video_id": vid(n), "url": moved if n == "gone" else u, "start": 0, "end": 25} for n, u in urls.items()]
    write_clips(clips, rows)
    server.log.clear()
    fifth = run_download(DownloadConfig(retries=0, **FAST), clips, out, show_progress=False)
    assert {p for _, p, _ in server.log} == {"/moved.mp4"}
    assert read_report(out)[vid("gone")]["status"] == "ok" and fifth.not_retried == 1


def test_cli_summary_says_permanent_failures_were_not_retried(tmp_path, server, video_bytes):
    gone = server.add("/gone.mp4", video_bytes, script=[404] * 10)
    good = server.add("/good.mp4", video_bytes)
    write_clips(tmp_path / "clips.parquet", [{"video_id": vid("gone"), "url": gone, "start": 0, "end": 25},
                                             {"video_id": vid("good"), "url": good, "start": 0, "end": 25}])
    write_params(tmp_path / "params.yaml", workers=0, **FAST)
    assert run_cli(tmp_path, "clips.parquet", "--out", "out").returncode == 0
    again = run_cli(tmp_path, "clips.parquet", "--out", "out")
    assert again.returncode == 0, again.stderr
    assert ("download: 1 ok (1 already done), 1 skipped (http_404 1), 0 failed of 2 videos; 0.0 MB in "
            in again.stdout)
    assert "1 permanent failures of earlier runs not retried (download.retry_failed)" in again.stdout
    assert server.requests("/gone.mp4") == 1


# ---------------------------------------------------------------- sections mode


def test_sections_mode_writes_frame_accurate_clip_files(tmp_path, server, video_bytes):
    url = server.add("/talk.mp4", video_bytes)
    clips_rows = [
        {"video_id": vid("talk"), "url": url, "start": 10, "end": 40},
        {"video_id": vid("talk"), "url": url, "start": 50, "end": 70},
        {"video_id": vid("talk"), "url": url, "start": 10, "end": 40},  # same clip twice: one file
    ]
    clips = write_clips(tmp_path / "clips.parquet", clips_rows)
    out = tmp_path / "videos"
    config = DownloadConfig(mode="sections", **FAST)
    result = run_download(config, clips, out, show_progress=False)

    assert [(r.status, r.attempts) for r in result.rows] == [("ok", 1)]
    files = sorted((out / vid("talk")).iterdir())
    assert [f.name for f in files] == ["000010-000040.mp4", "000050-000070.mp4"]
    assert not whole_video_path(out, vid("talk")).exists()
    for start, end in [(10, 40), (50, 70)]:
        path = section_path(out, vid("talk"), start, end)
        assert probe_duration(path) == pytest.approx((end - start) / 25, abs=0.05)
        source = find_source(out, vid("talk"), start, end)
        assert source is not None and source.path == path and source.offset_seconds == start / 25
    assert read_report(out)[vid("talk")]["bytes"] == sum(f.stat().st_size for f in files)

    # Resume: only the missing section is fetched again, the other file is left alone.
    kept = section_path(out, vid("talk"), 10, 40)
    kept_stat = kept.stat()
    section_path(out, vid("talk"), 50, 70).unlink()
    again = run_download(config, clips, out, show_progress=False)
    assert again.rows[0].status == "ok" and section_path(out, vid("talk"), 50, 70).is_file()
    assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (kept_stat.st_ino, kept_stat.st_mtime_ns)
    assert (out / "archive.txt").read_text().splitlines() == ["generic talk"]


# ---------------------------------------------------------------- file:// URLs


def test_file_urls_only_when_allowed(tmp_path, video_bytes):
    source = tmp_path / "local.mp4"
    source.write_bytes(video_bytes)
    rows = [{"video_id": vid("local"), "url": source.as_uri(), "start": 0, "end": 25},
            {"video_id": vid("missing"), "url": (tmp_path / "nope.mp4").as_uri(), "start": 0, "end": 25}]
    clips = write_clips(tmp_path / "clips.parquet", rows)
    out = tmp_path / "videos"
    with pytest.raises(FommError, match=r"row 0: file:// url .* `allow_file_urls: true`"):
        run_download(DownloadConfig(**FAST), clips, out, show_progress=False)
    assert not (out / "report.parquet").exists()

    result = run_download(DownloadConfig(allow_file_urls=True, retries=3, **FAST), clips, out, show_progress=False)
    assert [(r.status, r.reason, r.attempts) for r in result.rows] == [("ok", "", 1), ("skipped", "unavailable", 1)]
    assert whole_video_path(out, vid("local")).read_bytes() == video_bytes


def test_relative_urls_resolve_against_the_clips_table_and_stay_relative_in_the_report(tmp_path, video_bytes):
    (tmp_path / "synth" / "videos").mkdir(parents=True)
    (tmp_path / "synth" / "videos" / "local.mp4").write_bytes(video_bytes)
    (tmp_path / "metadata").mkdir()
    clips = write_clips(tmp_path / "metadata" / "clips.parquet",
                        [{"video_id": vid("local"), "url": "../synth/videos/local.mp4", "start": 0, "end": 25}])
    out = tmp_path / "videos"
    with pytest.raises(FommError, match=r"row 0: file:// url '\.\./synth/videos/local\.mp4' refused"):
        run_download(DownloadConfig(**FAST), clips, out, show_progress=False)
    result = run_download(DownloadConfig(allow_file_urls=True, **FAST), clips, out, show_progress=False)
    assert [(r.status, r.url) for r in result.rows] == [("ok", "../synth/videos/local.mp4")]
    assert whole_video_path(out, vid("local")).read_bytes() == video_bytes
    assert str(tmp_path) not in pd.read_parquet(out / "report.parquet").to_csv()


# ---------------------------------------------------------------- the CLI


def test_cli_kill_mid_run_then_resume(tmp_path, server, video_bytes):
    names = ["one", "two", "three"]
    urls = [server.add(f"/{n}.mp4", video_bytes, chunk_size=16 * 1024, chunk_delay=0.1) for n in names]
    write_clips(tmp_path / "meta.parquet",
                [{"video_id": vid(n), "url": u, "start": 0, "end": 50} for n, u in zip(names, urls)])
    # CLIPS and --out omitted: both come from the params.
    write_params(tmp_path / "params.yaml", clips="meta.parquet", out="dl", workers=1, **FAST)
    out = tmp_path / "dl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "download"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        part_dir = out / ".partial" / vid("two")
        while time.monotonic() < deadline:  # first video reported done, second one mid-transfer
            if vid("one") in journal_rows(out) and any(nonempty(p) for p in part_dir.glob("*.part")):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("never saw the first video done and the second one in progress")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert whole_video_path(out, vid("one")).read_bytes() == video_bytes
    assert not whole_video_path(out, vid("two")).exists()  # partial data never has a final name
    assert not whole_video_path(out, vid("three")).exists()
    assert list((out / ".partial" / vid("two")).glob("*.part"))  # a resumable part file
    assert not (out / "report.parquet").exists()  # the finished row lives in the journal only
    killed_row = journal_rows(out)[vid("one")]
    counts = {n: server.requests(f"/{n}.mp4") for n in names}

    for route in server.routes.values():
        route.chunk_delay = 0.0
    done = run_cli(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "download: 3 ok (1 already done), 0 skipped, 0 failed of 3 videos" in done.stdout
    assert server.requests("/one.mp4") == counts["one"]  # not requested again
    assert server.requests("/two.mp4") > counts["two"]
    for n in names:
        assert whole_video_path(out, vid(n)).read_bytes() == video_bytes
    report = read_report(out)
    assert report[vid("one")] == killed_row
    assert all(row["status"] == "ok" for row in report.values())
    assert Archive(out / "archive.txt").entries() == {f"generic {n}" for n in names}
    assert not (out / ".partial").exists()


def test_cli_min_success_fraction_exits_1_after_writing_report(tmp_path, server, video_bytes):
    good = server.add("/good.mp4", video_bytes)
    bad = server.add("/bad.mp4", video_bytes, script=[404] * 10)
    write_clips(tmp_path / "clips.parquet", [
        {"video_id": vid("good"), "url": good, "start": 0, "end": 25},
        {"video_id": vid("bad"), "url": bad, "start": 0, "end": 25},
    ])
    write_params(tmp_path / "strict.yaml", min_success_fraction=0.75, **FAST)
    failed = run_cli(tmp_path, "clips.parquet", "--out", "out", "--params", "strict.yaml")
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [failed.stderr.strip().splitlines()[-1]]  # one line, after the progress bar
    assert errors[0].startswith("error: only 1 of 2 videos downloaded, below min_success_fraction 0.75")
    assert "Traceback" not in failed.stderr
    assert "download: 1 ok, 1 skipped (http_404 1), 0 failed of 2 videos" in failed.stdout
    report = read_report(tmp_path / "out")
    assert {k: v["status"] for k, v in report.items()} == {vid("good"): "ok", vid("bad"): "skipped"}


def test_cli_rejects_bad_input_with_one_line(tmp_path):
    write_clips(tmp_path / "clips.parquet", [
        {"video_id": vid("fine"), "url": "https://example.com/a.mp4", "start": 0, "end": 25},
        {"video_id": "../../etc", "url": "https://example.com/b.mp4", "start": 0, "end": 25},
    ])
    write_params(tmp_path / "params.yaml")
    bad_id = run_cli(tmp_path, "clips.parquet", "--out", "out")
    assert bad_id.returncode == 2
    assert bad_id.stderr.strip() == (
        "error: clips.parquet row 1: video id '../../etc' is not 11 characters of [A-Za-z0-9_-], "
        "not starting with '-'"
    )
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the parts


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("abcdefghijk", "ftp://host/v.mp4", 0, 25)], r"row 0: url 'ftp://host/v.mp4' must be an http\(s\)://"),
        ([("abcdefghijk", "https://h/v.mp4", 30, 30)], r"row 0: end 30 must be after start 30"),
        ([("abcdefghijk", "https://h/v.mp4", -5, 30)], r"row 0: start -5 must be a whole frame number"),
        ([("abcdefghijk", "https://h/a.mp4", 0, 25), ("abcdefghijk", "https://h/b.mp4", 30, 40)],
         r"row 1: video abcdefghijk has url 'https://h/b.mp4' but row 0 gave"),
    ],
)
def test_plan_jobs_refuses_bad_rows(rows, message):
    table = pd.DataFrame(rows, columns=["video_id", "url", "start", "end"])
    with pytest.raises(FommError, match=message):
        plan_jobs(table, Path("clips.parquet"), allow_file_urls=True)


def test_plan_jobs_groups_clips_and_picks_extractors(tmp_path):
    table = pd.DataFrame([
        ("dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ", 50, 80),
        ("otherVideo1", "http://10.0.0.1/x.mp4", 0, 10),
        ("dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ", 10, 40),
        ("localfile01", "file:///data/v.mp4", 0, 10),
    ], columns=["video_id", "url", "start", "end"])
    jobs = plan_jobs(table, Path("c.parquet"), allow_file_urls=True)
    assert [(j.video_id, j.kind, j.sections) for j in jobs] == [
        ("dQw4w9WgXcQ", "youtube", ((10, 40), (50, 80))),
        ("otherVideo1", "http", ((0, 10),)),
        ("localfile01", "file", ((0, 10),)),
    ]
    logger = YtdlpLogger(logging.getLogger("test.download"), "x")
    config = DownloadConfig(max_height=480, sleep_interval=1.0, max_sleep_interval=3.0, ratelimit=50_000)
    yt = build_params(config, "youtube", tmp_path, logger, sections=[(10, 40), (50, 80)])
    assert yt["allowed_extractors"] == ["youtube"] and "enable_file_urls" not in yt
    assert yt["format"] == format_selector(480) and "[height<=480]" in yt["format"]
    assert yt["force_keyframes_at_cuts"] is True and yt["merge_output_format"] == "mp4"
    ranges = list(yt["download_ranges"]({"id": "x"}, None))
    assert ranges == [{"start_time": 0.4, "end_time": 1.6}, {"start_time": 2.0, "end_time": 3.2}]
    assert (yt["sleep_interval"], yt["max_sleep_interval"], yt["ratelimit"]) == (1.0, 3.0, 50_000)
    local = build_params(DownloadConfig(), "file", tmp_path, logger)
    assert local["allowed_extractors"] == ["generic"] and local["enable_file_urls"] is True
    assert "download_ranges" not in local and "sleep_interval" not in local and "ratelimit" not in local
    # A YoutubeDL built from these params loads only the allowed extractor.
    with yt_dlp.YoutubeDL({**local, "logger": logger}) as ydl:
        assert set(ydl._ies) == {"Generic"}


def _raised(exc_type, *args, **kwargs):
    """An exception as yt-dlp raises it: an ExtractorError wrapped in a DownloadError."""
    try:
        raise exc_type(*args, **kwargs)
    except Exception as inner:  # noqa: BLE001
        return DownloadError(f"ERROR: {inner}", sys.exc_info())


@pytest.mark.parametrize(
    "exc, reason",
    [
        (_raised(ExtractorError, "Private video. Sign in if you've been granted access to this video", expected=True), "private"),
        (_raised(ExtractorError, "Sign in to confirm your age. This video may be inappropriate for some users.", expected=True), "sign_in"),
        (_raised(ExtractorError, "Video unavailable. This video is no longer available due to a copyright claim", expected=True), "unavailable"),
        (_raised(ExtractorError, "The uploader has not made this video available in your country", expected=True), "geo_blocked"),
        (_raised(GeoRestrictedError, "blocked"), "geo_blocked"),
        (_raised(ExtractorError, "Requested format is not available. Use --list-formats", expected=True), "no_formats"),
        (DownloadError("ERROR: Unsupported URL: https://example.com/"), "unsupported_url"),
        (DownloadError("ERROR: unable to download video data: HTTP Error 403: Forbidden"), "http_403"),
        (DownloadError("ERROR: Got error: 1000 bytes read, 2000 more expected"), "connection"),
        (DownloadError("ERROR: something nobody expected"), "other"),
    ],
)
def test_classify_reads_chain_then_text(exc, reason):
    failure = classify(exc)
    assert failure.reason == reason
    assert failure.transient == (reason in TRANSIENT) and (reason in PERMANENT) != failure.transient
    assert not failure.message.startswith("ERROR:") and len(failure.message) <= 300


def test_backoff_grows_caps_jitters_and_honours_retry_after():
    backoff = Backoff(base=0.5, cap=3.0, jitter=0.2)
    rng = random.Random(1)
    for retry in range(1, 8):
        nominal = min(3.0, 0.5 * 2 ** (retry - 1))
        for _ in range(20):
            assert nominal * 0.8 <= backoff.delay(retry, rng=rng) <= nominal * 1.2
    assert backoff.delay(1, retry_after=2.5, rng=rng) >= 2.5
    assert backoff.delay(1, retry_after=100.0, rng=rng) <= 3.0 * 1.2


def test_retry_after_header_reaches_the_backoff(server, tmp_path, video_bytes):
    url = server.add("/limited.mp4", video_bytes, script=[429], retry_after=7)
    logger = YtdlpLogger(logging.getLogger("test.download"), "x")
    params = build_params(DownloadConfig(**FAST), "http", tmp_path, logger)
    stop = threading.Event()
    seen = []

    def on_failure(number, failure, wait):
        seen.append((failure.reason, failure.retry_after, wait))
        stop.set()  # end the loop without actually waiting

    def attempt(_number):
        with yt_dlp.YoutubeDL(params) as ydl:
            return ydl.extract_info(url, download=False)

    outcome = with_retries(attempt, retries=3, backoff=Backoff(0.01, 10.0, 0.0), stop=stop, on_failure=on_failure)
    assert outcome.attempts == 1 and outcome.failure is not None
    assert seen == [("http_429", 7.0, 7.0)]


def test_cookies_file_is_sent_and_never_rewritten(tmp_path, server, video_bytes):
    url = server.add("/members.mp4", video_bytes)
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tsession\tsecret-token\n"
    )
    before = cookies.read_bytes()
    clips = write_clips(tmp_path / "clips.parquet", [{"video_id": vid("members"), "url": url, "start": 0, "end": 25}])
    result = run_download(DownloadConfig(cookies=str(cookies), **FAST), clips, tmp_path / "out", show_progress=False)
    assert result.rows[0].status == "ok"
    assert server.cookies and all("session=secret-token" in c for c in server.cookies)
    assert cookies.read_bytes() == before
    assert not list((tmp_path / "out").rglob("*cookies*"))
    with pytest.raises(FommError, match="download.cookies: cookies file .*missing.txt not found"):
        run_download(DownloadConfig(cookies=str(tmp_path / "missing.txt")), clips, tmp_path / "out", show_progress=False)


@pytest.mark.parametrize("case", ["proc", "file_as_folder", "foreign_folder", "contains_input", "immutable",
                                  "-oProxyComm", "-i_________", "--exec_____"])
def test_cli_refuses_bad_out_and_option_like_ids_before_any_request(tmp_path, server, video_bytes, case):
    url = server.add("/v.mp4", video_bytes)
    video_id, out = vid("fine"), "out"
    (tmp_path / "afile").write_text("x")
    if case.startswith("-"):
        video_id, expected = case, f"video id {case!r} is not 11 characters of [A-Za-z0-9_-], not starting with '-'"
    else:
        out, expected = {
            "proc": ("/proc/fomm-download-out", "cannot write in /proc"),
            "file_as_folder": ("afile/videos", "is a file, not a folder"),
            "foreign_folder": ("mine", "already holds 'PRECIOUS.txt'"),
            "contains_input": (".", "contains the input"),
            "immutable": ("locked", "cannot write in"),
        }[case]
    if case == "foreign_folder":
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "PRECIOUS.txt").write_text("keep me")
    write_clips(tmp_path / "clips.parquet", [{"video_id": video_id, "url": url, "start": 0, "end": 25}])
    write_params(tmp_path / "params.yaml", **FAST)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with immutable_folder(tmp_path / "locked") if case == "immutable" else contextlib.nullcontext():
        if case == "immutable":
            before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        done = run_cli(tmp_path, "clips.parquet", "--out", out)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr and "Traceback" not in done.stderr
    assert server.log == []
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("value", [1e30, 2.0**70, 2**63 - 1])
def test_frame_numbers_past_int64_name_the_row(value):
    table = pd.DataFrame([("abcdefghijk", "https://h/v.mp4", 0, 25), ("abcdefghijk", "https://h/v.mp4", 0, value)],
                         columns=["video_id", "url", "start", "end"])
    with pytest.raises(FommError, match=r"clips.parquet row 1: end .* must be a whole frame number from 0 to 1000000000"):
        plan_jobs(table, Path("clips.parquet"), allow_file_urls=False)
