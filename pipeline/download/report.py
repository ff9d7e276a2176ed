"""``DIR/report.parquet``: one row per video, and the stage's one-line summary."""

from __future__ import annotations

import collections
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fomm_core.atomic import atomic_path

log = logging.getLogger(__name__)

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


def read_report(path: Path) -> dict[str, ReportRow]:
    """The previous run's rows by video id; an unreadable report is ignored (rebuilt)."""
    if not path.is_file():
        return {}
    try:
        table = pq.read_table(path)
        rows = table.select(SCHEMA.names).to_pylist()
    except Exception as exc:  # noqa: BLE001 - a damaged report must not block a resume
        log.warning("ignoring unreadable %s (%s)", path, exc)
        return {}
    out = {}
    for row in rows:
        try:
            out[row["video_id"]] = ReportRow(
                video_id=str(row["video_id"]), status=str(row["status"]), reason=str(row["reason"] or ""),
                attempts=int(row["attempts"]), bytes=int(row["bytes"]), seconds=float(row["seconds"]),
                url=str(row["url"] or ""), error=str(row["error"] or ""),
            )
        except (TypeError, ValueError):
            continue
    return out


def write_report(path: Path, rows: list[ReportRow]) -> None:
    table = pa.Table.from_pylist([asdict(row) for row in rows], schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _counts(rows: list[ReportRow], status: str) -> str:
    reasons = collections.Counter(row.reason for row in rows if row.status == status)
    total = sum(reasons.values())
    if not total:
        return f"{total} {status}"
    detail = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} {status} ({detail})"


def summary_line(rows: list[ReportRow], new_bytes: int, seconds: float, already_done: int) -> str:
    """``download: 18 ok, 1 skipped (http_404 1), 1 failed (http_5xx 1) of 20 videos; 52.1 MB in 12.3 s``."""
    ok = sum(1 for row in rows if row.status == "ok")
    ok_text = f"{ok} ok" + (f" ({already_done} already done)" if already_done else "")
    return (
        f"download: {ok_text}, {_counts(rows, 'skipped')}, {_counts(rows, 'failed')} of {len(rows)} videos; "
        f"{new_bytes / 1e6:.1f} MB in {seconds:.1f} s"
    )
