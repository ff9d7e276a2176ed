"""Reading one stage's section of params.yaml into its typed config."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TypeVar

import yaml

from fomm_core.config import from_mapping
from fomm_core.errors import FommError

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")

# Every top-level section some stage reads. A name outside this set is a typo (`modle:`)
# that would otherwise leave the intended section silently at its defaults.
KNOWN_SECTIONS = (
    "synth", "metadata", "download", "tubes", "crop", "shard",
    "model", "losses", "train", "evaluate", "demo",
    "talker_model", "syncer", "talker_train", "talker_eval",
)


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
    unknown = [key for key in data if key not in KNOWN_SECTIONS]
    if unknown:
        key = str(unknown[0])
        close = difflib.get_close_matches(key, KNOWN_SECTIONS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(KNOWN_SECTIONS)}"
        raise FommError(f"{path}: unknown section {key!r}; {hint}")
    return data


def load_section(path: Path, section: str, cls: type[T]) -> T:
    """The stage's config; a stage reads only its own section, so DVC tracks exactly that.

    A missing section is not an error (a params file may hold only what it changes), but it
    is never silent: a note (on stdout, with the stage's other notes and its summary line,
    so stderr keeps only errors) says the built-in defaults are used.
    """
    if section not in KNOWN_SECTIONS:
        raise ValueError(f"section {section!r} is not registered in pipeline.params.KNOWN_SECTIONS")
    data = load_params_file(path)
    if data.get(section) is None:
        from pipeline.progress import summary

        summary(f"note: {path} has no `{section}:` section; using the built-in defaults "
                 f"(see the project's params.yaml)")
    try:
        return from_mapping(cls, data.get(section), section)
    except FommError as exc:
        raise FommError(f"{path}: {exc}") from None
