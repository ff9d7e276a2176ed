"""Named settings for the FOMM sections of params.yaml, and applying one in place.

A profile file holds whole ``model``, ``losses`` and ``train`` sections. Applying it swaps
exactly those top-level blocks in the params text, so the other sections keep their values,
order and comments, and DVC sees a params change only in the stages that read them.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from fomm_core.atomic import write_text_atomic
from fomm_core.config import from_mapping
from fomm_core.errors import FommError

PROFILE_DIR = Path(__file__).resolve().parent
SECTIONS = ("model", "losses", "train")
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")


def available() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    if name not in available():
        raise FommError(f"unknown profile {name!r}; available: {', '.join(available())}")
    return PROFILE_DIR / f"{name}.yaml"


def _blocks(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Top-level key -> (first line, end line exclusive), trailing comments/blanks left out."""
    starts = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _TOP_KEY.match(line))]
    blocks = {}
    for k, (start, key) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(lines)
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
            end -= 1  # comments just above the next section belong to it
        blocks[key] = (start, end)
    return blocks


def _section_text(lines: list[str], blocks: dict[str, tuple[int, int]], key: str) -> list[str]:
    start, end = blocks[key]
    return lines[start:end]


def apply_profile(name: str, params: Path) -> list[str]:
    """Replace ``params``' model/losses/train sections with profile ``name``'s; returns them."""
    from fomm_core.losses import LossConfig
    from fomm_core.model_config import ModelConfig
    from fomm_core.training.config import TrainConfig

    if not params.is_file():
        raise FommError(f"{params}: params file not found; run from the project root or pass --params")
    source = profile_path(name)
    profile_lines = source.read_text().splitlines(keepends=True)
    profile_blocks = _blocks(profile_lines)
    missing = [s for s in SECTIONS if s not in profile_blocks]
    if missing:
        raise FommError(f"{source}: profile lacks the {', '.join(missing)} section(s)")

    lines = params.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    blocks = _blocks(lines)
    # Replace from the bottom up so earlier line numbers stay valid; append absent sections.
    for key in sorted((s for s in SECTIONS if s in blocks), key=lambda s: blocks[s][0], reverse=True):
        start, end = blocks[key]
        lines[start:end] = _section_text(profile_lines, profile_blocks, key)
    for key in SECTIONS:
        if key not in blocks:
            lines += ["\n", *_section_text(profile_lines, profile_blocks, key)]
    text = "".join(lines)

    data = yaml.safe_load(text)
    for key, cls in zip(SECTIONS, (ModelConfig, LossConfig, TrainConfig)):
        from_mapping(cls, data.get(key), f"{source}: {key}")  # a broken profile never lands
    write_text_atomic(params, text)
    return list(SECTIONS)
