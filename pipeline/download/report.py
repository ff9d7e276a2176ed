"""``DIR/report.parquet``: one row per video, kept incrementally, and the stage's summary line.

During a run every finished video appends one line to a journal part
(:mod:`pipeline.journal`); the Parquet report is written once, at the end, from the
previous report plus the parts. Bookkeeping per video is constant, so a re-run over
150k finished videos costs seconds, and a killed run's rows survive in its part.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fomm_core.atomic import atomic_path
from pipeline.journal import JournalWriter, is_being_written, part_files, read_parts, remove_parts

log = logging.getLogger(__name__)

REPORT_NAME = "report.parquet"
JOURNAL_NAME = "report"

SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("status", pa.string()),  # ok | skipped (permanent cause) | failed (transient, retries used up)
    ("reason", pa.string()),  # '' when ok, else a code from errors.REASONS
    ("attempts", pa.int64()),
    ("bytes", pa.int64()),
    ("seconds", pa.float64()),
    ("url", pa.string()),
    ("error", pa.string()),
])
STATUSES = ("ok", "skipped", "failed")


@dataclass(frozen=True)
class ReportRow:
    video_id: str
    status: str
    reason: str
    attempts: int
    bytes: int
    seconds: float
    url: str
    error: str


def _read_parquet(path: Path) -> pa.Table:
    if not path.is_file():
        return SCHEMA.empty_table()
    try:
        return pq.read_table(path, columns=SCHEMA.names).cast(SCHEMA)
    except Exception as exc:  # noqa: BLE001 - a damaged report must not block a resume
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return SCHEMA.empty_table()


def _readable_parts(out_dir: Path) -> tuple[list[Path], list[pa.Table]]:
    paths, tables = [], []
    for path in part_files(out_dir, JOURNAL_NAME):
        try:
            tables.append(read_parts([path], SCHEMA))
            paths.append(path)
        except pa.ArrowInvalid as exc:
            log.warning("ignoring damaged report part %s (%s)", path, exc)
    return paths, tables


def load_rows(out_dir: Path) -> pd.DataFrame:
    """Every video's latest row (report plus journal parts), indexed by video id."""
    _, parts = _readable_parts(out_dir)
    table = pa.concat_tables([_read_parquet(out_dir / REPORT_NAME), *parts])
    frame = table.to_pandas()
    return frame.drop_duplicates("video_id", keep="last").set_index("video_id", drop=False)


class ReportJournal(JournalWriter):
    """This run's report rows, one line per video as it finishes."""

    def __init__(self, out_dir: Path) -> None:
        super().__init__(out_dir, JOURNAL_NAME)

    def add(self, row: ReportRow) -> None:
        self.append(asdict(row))


def merge_report(out_dir: Path, video_ids: list[str]) -> pd.DataFrame:
    """Write ``report.parquet``: the latest row of each of ``video_ids``, in that order.

    Parts are deleted once the report holding their rows is in place; a part still locked
    by a running download stays (it is merged by whichever run ends last).
    """
    paths, parts = _readable_parts(out_dir)
    table = pa.concat_tables([_read_parquet(out_dir / REPORT_NAME), *parts])
    frame = table.to_pandas().drop_duplicates("video_id", keep="last").set_index("video_id", drop=False)
    frame = frame.reindex(pd.Index(video_ids, name=None)).dropna(subset=["status"])
    frame = frame.reset_index(drop=True).astype({"attempts": "int64", "bytes": "int64"})
    with atomic_path(out_dir / REPORT_NAME) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), tmp)
    remove_parts(out_dir, JOURNAL_NAME, [p for p in paths if not is_being_written(p)])
    return frame


def rows_of(frame: pd.DataFrame) -> list[ReportRow]:
    """The report as :class:`ReportRow` objects (small reports and tests)."""
    return [ReportRow(**{k: row[k] for k in SCHEMA.names}) for row in frame.to_dict("records")]


def _counts(frame: pd.DataFrame, status: str) -> str:
    reasons = collections.Counter(frame.loc[frame["status"] == status, "reason"])
    total = sum(reasons.values())
    if not total:
        return f"{total} {status}"
    detail = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} {status} ({detail})"


def summary_line(frame: pd.DataFrame, new_bytes: int, seconds: float, already_done: int,
                 not_retried: int = 0) -> str:
    """``download: 18 ok, 1 skipped (http_404 1), 1 failed (http_5xx 1) of 20 videos; 52.1 MB in 12.3 s``."""
    ok = int((frame["status"] == "ok").sum())
    ok_text = f"{ok} ok" + (f" ({already_done} already done)" if already_done else "")
    line = (
        f"download: {ok_text}, {_counts(frame, 'skipped')}, {_counts(frame, 'failed')} of {len(frame)} videos; "
        f"{new_bytes / 1e6:.1f} MB in {seconds:.1f} s"
    )
    if not_retried:
        line += f"; {not_retried} permanent failures of earlier runs not retried (download.retry_failed)"
    return line
