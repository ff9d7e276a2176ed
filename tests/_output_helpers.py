"""An immutable folder for output-path tests: root ignores chmod 0o555, not `chattr +i`."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def immutable_folder(path: Path) -> Iterator[Path]:
    """``path`` created and made immutable (nothing can be created in it, even by root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
