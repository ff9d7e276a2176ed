"""Typed config: defaults, conversions and the one-line errors a user sees."""

import subprocess
import sys
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from fomm_core.config import ConfigError, from_mapping
from pipeline.params import load_section
from fomm_core.errors import FommError


@dataclass
class Inner:
    sigma: float = 0.5


@dataclass
class Example:
    size: int = 256
    rate: float = 1.0
    name: str = "x"
    on: bool = True
    mode: Literal["clip", "drop"] = "clip"
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5])
    maybe: Optional[int] = None
    inner: Inner = field(default_factory=Inner)

    def validate(self):
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")


def test_defaults_and_conversions():
    cfg = from_mapping(Example, {"rate": 2, "scales": [1, 0.25], "inner": {"sigma": 1}}, "ex")
    assert cfg.size == 256 and cfg.rate == 2.0 and isinstance(cfg.rate, float)
    assert cfg.scales == [1.0, 0.25] and cfg.inner.sigma == 1.0
    assert from_mapping(Example, None, "ex") == Example()


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"sise": 3}, "ex.sise: unknown key"),
        ({"size": "big"}, "ex.size: expected an integer, got 'big'"),
        ({"size": 2.5}, "ex.size: expected an integer"),
        ({"on": "yes"}, "ex.on: expected true or false"),
        ({"rate": True}, "ex.rate: expected a number"),
        ({"mode": "crop"}, "ex.mode: expected one of 'clip', 'drop'"),
        ({"scales": [1, "a"]}, "ex.scales[1]: expected a number"),
        ({"inner": {"sigmaa": 1}}, "ex.inner.sigmaa: unknown key"),
        ({"size": -1}, "ex: size must be positive"),
        ([1, 2], "ex: expected a mapping"),
    ],
)
def test_errors_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as info:
        from_mapping(Example, mapping, "ex")
    assert message in str(info.value)


def test_params_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FommError, match="params file not found"):
        load_section(missing, "demo", Example)
    bad = tmp_path / "bad.yaml"
    bad.write_text("demo: [unclosed\n")
    with pytest.raises(FommError, match=r"bad.yaml line \d+: not valid YAML"):
        load_section(bad, "demo", Example)
    good = tmp_path / "params.yaml"
    good.write_text("demo:\n  size: 64\nsynth:\n  anything: 1\n")
    assert load_section(good, "demo", Example).size == 64  # other stages' sections are not read
    good.write_text("demo:\n  size: 64\nother:\n  anything: 1\n")
    with pytest.raises(FommError, match="unknown section 'other'"):
        load_section(good, "demo", Example)


def test_cli_reports_wrong_param_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("metadata:\n  min_framez: 3\n")
    (tmp_path / "x.csv").write_text("video_id\n")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "metadata", "x.csv", "--out", "c.parquet"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "metadata.min_framez: unknown key" in lines[0]
    assert "Traceback" not in result.stderr
