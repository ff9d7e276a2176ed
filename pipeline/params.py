"""Reading one stage's section of params.yaml into its typed config."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml

from fomm_core.config import from_mapping
from fomm_core.errors import FommError

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")


def load_params_file(path: Path) -> dict:
    if not path.exists():
        raise FommError(f"{path}: params file not found; run from the project root or pass --params")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise FommError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise FommError(f"{path}: expected a mapping of stage sections at the top level")
    return data


def load_section(path: Path, section: str, cls: type[T]) -> T:
    """The stage's config; a stage reads only its own section, so DVC tracks exactly that."""
    data = load_params_file(path)
    try:
        return from_mapping(cls, data.get(section), section)
    except FommError as exc:
        raise FommError(f"{path}: {exc}") from None
