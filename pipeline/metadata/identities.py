"""Which identities form the test split of txt annotations (which carry no partition).

Sources: the ``test_identities`` list in params, and/or a file holding either one id per
line (``#`` comments allowed) or a VoxCeleb meta table (``vox1_meta.csv``: tab separated,
``VoxCeleb1 ID ... Set``; ``vox2_meta.csv``: comma separated with padded names), where
rows with ``Set == test`` are the test identities.
"""

from __future__ import annotations

from pathlib import Path

from fomm_core.errors import FommError

from .checks import valid_person_id
from .records import short

# VoxCeleb1's official test split: the 40 identities of vox1_test_txt.zip (id10270..id10309).
VOX1_TEST_IDENTITIES = frozenset(f"id{n}" for n in range(10270, 10310))
OFFICIAL_TEST_ZIPS = ("vox1_test_txt.zip", "vox2_test_txt.zip")


def is_official_test_input(path: Path) -> bool:
    """The official test annotations: ``vox1_test_txt.zip``/``vox2_test_txt.zip``, or a folder
    called ``test`` (or a ``txt/`` folder inside one)."""
    if path.name.lower() in OFFICIAL_TEST_ZIPS:
        return True
    resolved = path.resolve()
    return resolved.name == "test" or (resolved.name == "txt" and resolved.parent.name == "test")


def in_test_folder(parts: tuple[str, ...]) -> bool:
    """A txt file below a ``test`` folder inside the input (``vox/test/txt/id.../...``)."""
    return "test" in parts[:-3]


def _check(value: str, where: str) -> str:
    if not valid_person_id(value):
        raise FommError(f"{where}: {value[:40]!r} is not a person id like id10001")
    return value


def parse_meta_table(lines: list[str], path: Path) -> set[str]:
    delimiter = "\t" if "\t" in lines[0] else ","
    names = [name.strip() for name in lines[0].split(delimiter)]
    id_column = next((i for i, n in enumerate(names) if n.startswith("VoxCeleb") and n.endswith("ID")), None)
    if id_column is None or "Set" not in names:
        raise FommError(f"{path}: a meta table needs a 'VoxCeleb1 ID' (or VoxCeleb2 ID) and a 'Set' column")
    set_column = names.index("Set")
    found = set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(delimiter)]
        if len(cells) <= max(id_column, set_column):
            raise FommError(f"{path} line {number}: expected {len(names)} {delimiter!r}-separated columns")
        split = cells[set_column].lower()
        if split not in ("dev", "test", "train"):
            raise FommError(f"{path} line {number}: Set {short(cells[set_column])!r} is not dev or test")
        if split == "test":
            found.add(_check(cells[id_column], f"{path} line {number}"))
    return found


def read_identity_file(path: Path) -> set[str]:
    if not path.is_file():
        raise FommError(f"{path}: test identities file not found; fix metadata.test_identities_file in params")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FommError(f"{path}: cannot read the test identities file ({exc})") from None
    if lines and "Set" in lines[0] and "ID" in lines[0]:
        return parse_meta_table(lines, path)
    found = set()
    for number, line in enumerate(lines, start=1):
        value = line.split("#", 1)[0].strip()
        if value:
            found.add(_check(value, f"{path} line {number}"))
    return found


def load_test_identities(listed: list[str], file: str, official: bool = False) -> frozenset[str]:
    """The listed ids, those of ``file``, and (``official``) VoxCeleb1's test identities."""
    found = {_check(value.strip(), "metadata.test_identities") for value in listed}
    if official:
        found |= VOX1_TEST_IDENTITIES
    if file:
        found |= read_identity_file(Path(file))
    return frozenset(found)
