"""What the stages hand on for comparing runs: metrics for DVC and MLflow, small tables for plots.

Each stage keeps its full report (with text: skip reasons, paths, devices) in its own
output folder, and writes the *numbers* to the git-tracked ``metrics/`` folder, where
``dvc metrics diff``, ``dvc exp show`` and ``dvc plots`` read them across commits and
experiments. Nothing there may hold a path or a timestamp of where the project lives,
so ``dvc.lock`` stays the same in every clone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fomm_core.atomic import write_text_atomic
from fomm_core.outputs import check_output_file

METRICS_DIR = Path("metrics")  # git-tracked; DVC metrics and plots with cache: false


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite_numbers(metrics: Mapping) -> dict[str, float]:
    """The finite numbers of a flat metrics dict: what MLflow can store (strings, None, NaN left out)."""
    return {k: float(v) for k, v in metrics.items() if _is_number(v)}


def numbers_only(report: Mapping) -> dict[str, Any]:
    """``report`` without text, None, NaN or booleans; nested dicts kept (DVC shows ``losses.perceptual``)."""
    kept: dict[str, Any] = {}
    for key, value in report.items():
        if isinstance(value, Mapping):
            inner = numbers_only(value)
            if inner:
                kept[key] = inner
        elif _is_number(value):
            kept[key] = value
    return kept


_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def looks_like_ours(path: Path) -> bool:
    """A metrics JSON of numbers only, or a plot table with an identifier header: what the stages write."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
            return isinstance(data, dict) and numbers_only(data) == data
        header = text.split("\n", 1)[0].split("\t")
        return len(header) >= 2 and all(_COLUMN.fullmatch(name) for name in header)
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def check_metrics_files(folder: Path, command: str, names: Sequence[str],
                        inputs: Iterable[str | os.PathLike | None] = ()) -> list[Path]:
    """Before any work: the paths of ``command``'s files in ``folder``, which must be writable and
    may replace only files that look like the stages' own (see :func:`looks_like_ours`)."""
    return [check_output_file(folder / name, command, inputs, is_ours=looks_like_ours, flag="--metrics-dir")
            for name in names]


def write_metrics_json(path: Path, metrics: Mapping) -> None:
    """JSON has no inf/nan: such values become null (they are never expected). Written atomically."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    write_text_atomic(path, json.dumps(clean, indent=2, allow_nan=False) + "\n")


def write_dvc_metrics(path: Path, report: Mapping) -> dict[str, Any]:
    """The numbers of ``report`` as sorted JSON at ``path`` (a DVC metrics file); returns them."""
    numbers = numbers_only(report)
    write_text_atomic(path, json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    return numbers


def write_tsv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A small table for ``dvc plots`` (header row, tab-separated, floats to 6 significant digits)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
    write_text_atomic(path, buffer.getvalue())
