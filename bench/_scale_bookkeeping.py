"""Bookkeeping at VoxCeleb size: download re-runs, archive and report appends, crop's memory.

Sizes are clip counts (VoxCeleb1 ~20k clips, VoxCeleb2 ~1.1M clips from ~150k videos);
videos are ``clips / 7.33`` (VoxCeleb2's ratio). Nothing is downloaded or encoded: the
figures are what the stages spend per video / clip besides the real work.

* download re-run: ``run_download`` over a clips table whose videos are all finished (95%,
  files present) or permanently failed (5%, a ``skipped`` row): seconds, and requests made
  (must be 0; the URLs point at a closed loopback port).
* archive append: microseconds per ``Archive.add`` into an archive of that many videos.
* report write: microseconds per journalled row, and seconds of the final merge.
* crop: peak RSS (VmHWM) and wall time of ``fomm crop`` in a fresh process over a clips
  table whose sources are all missing: every clip goes through the table checks, the
  bounded queue, the manifest journal and the final merge, none through ffmpeg.

``bench/scale.py`` imports :func:`bookkeeping_figures`; alone it prints one JSON object::

    .venv/bin/python bench/_scale_bookkeeping.py [--sizes 20000 200000 1100000] [--crop-sizes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _peak_rss import run_fomm_with_peak_rss  # noqa: E402  (bench/ is on the path: the script's folder)
from pipeline.download.archive import Archive  # noqa: E402
from pipeline.download.config import DownloadConfig  # noqa: E402
from pipeline.download.report import SCHEMA, ReportJournal, ReportRow, merge_report  # noqa: E402
from pipeline.download.runner import run_download  # noqa: E402

CLIPS_PER_VIDEO = 1.1e6 / 150e3
# VoxCeleb's URL form. Nothing may be requested (the figures count it); offline, a request
# would fail at name resolution.
DEAD_URL = "https://www.youtube.com/watch?v={}"


def video_ids(count: int) -> list[str]:
    return [f"v{i:010d}" for i in range(count)]  # 11 characters, like YouTube's


def clip_rows(clips: int) -> pd.DataFrame:
    """A clips table of ``clips`` rows over ``clips / 7.33`` videos (download's columns)."""
    videos = max(1, round(clips / CLIPS_PER_VIDEO))
    ids = np.array(video_ids(videos), dtype=object)
    owner = np.arange(clips) % videos
    start = (np.arange(clips) // videos) * 200
    return pd.DataFrame({
        "video_id": ids[owner], "url": [DEAD_URL.format(v) for v in ids[owner]],
        "start": start.astype(np.int64), "end": (start + 100).astype(np.int64),
    })


def download_rerun(clips: int, root: Path) -> dict:
    table = clip_rows(clips)
    path = root / "clips.parquet"
    table.to_parquet(path, index=False)
    out = root / "videos"
    out.mkdir()
    ids = list(dict.fromkeys(table["video_id"]))
    failed = set(ids[::20])  # 5% permanently failed
    rows = []
    for video in ids:
        if video in failed:
            rows.append(ReportRow(video, "skipped", "http_404", 1, 0, 0.1, DEAD_URL.format(video), "HTTP Error 404"))
        else:
            (out / f"{video}.mp4").touch()
            rows.append(ReportRow(video, "ok", "", 1, 0, 1.0, DEAD_URL.format(video), ""))
    frame = pd.DataFrame([r.__dict__ for r in rows])
    pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), out / "report.parquet")
    started, cpu = time.perf_counter(), time.process_time()
    result = run_download(DownloadConfig(), path, out, show_progress=False)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    fetched = len(ids) - result.already_done - result.not_retried
    return {"clips": clips, "videos": len(ids), "rerun_s": round(seconds, 2), "rerun_cpu_s": round(cpu, 2),
            "videos_requested": fetched, "us_per_video": round(seconds / len(ids) * 1e6, 1)}


def archive_append(videos: int, root: Path, appends: int = 2000) -> dict:
    archive_path = root / "archive.txt"
    archive_path.write_text("".join(f"youtube {v}\n" for v in video_ids(videos)))
    archive = Archive(archive_path)
    archive.add([f"youtube first{videos}"])  # reads the file once
    started = time.perf_counter()
    for i in range(appends):
        archive.add([f"youtube new{i:08d}"])
    per = (time.perf_counter() - started) / appends
    return {"archive_entries": videos, "archive_append_us": round(per * 1e6, 1)}


def report_writes(videos: int, root: Path) -> dict:
    out = root / "report"
    out.mkdir()
    ids = video_ids(videos)
    started = time.perf_counter()
    with ReportJournal(out) as journal:
        for video in ids:
            journal.add(ReportRow(video, "ok", "", 1, 1234, 0.5, DEAD_URL.format(video), ""))
    per_row = (time.perf_counter() - started) / videos
    started = time.perf_counter()
    merge_report(out, ids)
    return {"report_row_append_us": round(per_row * 1e6, 1),
            "report_merge_s": round(time.perf_counter() - started, 2)}


def crop_table(clips: int, path: Path) -> None:
    """A clips table of ``clips`` rows (the metadata stage's columns) over ``clips / 7.33`` videos."""
    videos = max(1, round(clips / CLIPS_PER_VIDEO))
    index = np.arange(clips)
    video = np.array(video_ids(videos), dtype=object)[index % videos]
    person = np.array([f"id{10000 + (i % 5000):05d}" for i in range(videos)], dtype=object)[index % videos]
    start = (index // videos) * 200
    end = start + 100
    clip_id = [f"{p}#{v}#{s:06d}#{e:06d}" for p, v, s, e in zip(person, video, start, end)]
    table = pa.table({
        "clip_id": clip_id, "video_id": video, "person_id": person, "partition": ["train"] * clips,
        "start": start.astype(np.int64), "end": end.astype(np.int64), "fps": np.full(clips, 25.0),
        "left": np.full(clips, 100.0), "top": np.full(clips, 50.0), "right": np.full(clips, 300.0),
        "bottom": np.full(clips, 250.0), "width": np.full(clips, 640.0), "height": np.full(clips, 360.0),
    })
    pq.write_table(table, path)


def crop_memory(clips: int, root: Path) -> dict:
    """Peak RSS and wall time of `fomm crop` over ``clips`` clips whose videos are all missing."""
    crop_table(clips, root / "clips.parquet")
    (root / "videos").mkdir()
    (root / "params.yaml").write_text("crop:\n  workers: 0\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done, peak_mb, seconds = run_fomm_with_peak_rss(["crop", "clips.parquet", "--videos", "videos", "--out", "out"],
                                                    root, env)
    stderr = done.stderr
    if f"0 ok, {clips} failed (not_downloaded {clips}) of {clips} clips" not in stderr:
        raise SystemExit(f"bench: unexpected crop result: {stderr[-500:]}")
    rows = pq.read_metadata(root / "out" / "manifest.parquet").num_rows
    return {"clips": clips, "peak_rss_mb": round(peak_mb, 1), "seconds": round(seconds, 1),
            "us_per_clip": round(seconds / clips * 1e6, 1), "manifest_rows": rows}


def bookkeeping_figures(sizes: list[int], crop_sizes: list[int] | None = None) -> dict:
    """Figures per size (clip count); crop RSS at ``crop_sizes`` (default: ``sizes``)."""
    figures: dict = {"download": [], "crop": []}
    for clips in crop_sizes or sizes:  # first: a fresh, small bench process
        with tempfile.TemporaryDirectory(prefix="scale-crop-") as tmp:
            figures["crop"].append(crop_memory(clips, Path(tmp)))
    for clips in sizes:
        with tempfile.TemporaryDirectory(prefix="scale-bk-") as tmp:
            root = Path(tmp)
            entry = download_rerun(clips, root)
            entry.update(archive_append(entry["videos"], root))
            entry.update(report_writes(entry["videos"], root))
            figures["download"].append(entry)
    if len(figures["crop"]) > 1:
        first, last = figures["crop"][0], figures["crop"][-1]
        figures["crop_rss_bytes_per_clip"] = round(
            (last["peak_rss_mb"] - first["peak_rss_mb"]) * 2**20 / (last["clips"] - first["clips"]), 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000, 1_100_000])
    parser.add_argument("--crop-sizes", type=int, nargs="+", default=None)
    args = parser.parse_args()
    print(json.dumps(bookkeeping_figures(args.sizes, args.crop_sizes), indent=2))


if __name__ == "__main__":
    main()
