"""What a training loop tells its caller after each optimizer step.

The loops live in this library, the progress bar in the CLI (``pipeline.progress``): the
loop calls an ``OnStep`` callback with a :class:`StepReport` and never imports a display
library. Without a callback the loops print a loss line at each log point through their
``log`` function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional


@dataclass(frozen=True)
class StepReport:
    step: int  # optimizer steps done, counting those before a resume
    total: int  # steps this run ends at
    losses: Mapping[str, float]  # this step's values
    samples_per_second: float  # since this run started
    # At a log point (every ``log_every`` steps): the means since the previous one, as logged.
    logged: Optional[Mapping[str, float]] = None


OnStep = Callable[[StepReport], None]


def short_name(key: str) -> str:
    """``talker/l2_velocity`` -> ``l2_velocity``: metric keys without their tracking prefix."""
    return key.rsplit("/", 1)[-1]


def losses_text(values: Mapping[str, float]) -> str:
    return "  ".join(f"{short_name(k)} {v:.4g}" for k, v in values.items())


def report_line(prefix: str, report: StepReport) -> str:
    """The plain-text line for a log point: ``train step 50/400: perceptual 1.2  ...  (8.1 samples/s)``."""
    values = report.logged if report.logged is not None else report.losses
    return f"{prefix} step {report.step}/{report.total}: {losses_text(values)}  ({report.samples_per_second:.3g} samples/s)"
