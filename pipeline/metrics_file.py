"""Metrics as the stages hand them on: ``metrics.json`` for DVC and numbers for MLflow."""

from __future__ import annotations

import json
import math
from pathlib import Path

from fomm_core.atomic import write_text_atomic


def finite_numbers(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics dict: what MLflow can store (strings, None, NaN left out)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def write_metrics_json(path: Path, metrics: dict) -> None:
    """JSON has no inf/nan: such values become null (they are never expected). Written atomically."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    write_text_atomic(path, json.dumps(clean, indent=2, allow_nan=False) + "\n")
