"""Settings of the metadata stage (the ``metadata`` section of params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_INPUT = "artifacts/synth/vox-metadata.csv"
DEFAULT_OUT = "artifacts/metadata/clips.parquet"


@dataclass
class MetadataConfig:
    """What to read, what to keep and how to read ambiguous inputs.

    ``input``: the metadata read when the command is given no INPUT (the DVC stage uses it:
    point it at the real vox-metadata.csv, a txt tree or a zip to switch datasets).

    ``box_policy``: a box reaching past the frame is clamped and kept (``clip``) or rejected
    (``drop``); a box entirely outside the frame is always rejected.
    ``txt_units``: units of txt annotation boxes; ``auto`` decides per file (all values
    <= 1 means VoxCeleb2 fractions, otherwise VoxCeleb1 pixels at height 360).
    ``test_identities`` / ``test_identities_file``: identities whose txt clips go to the
    test partition (the file holds one id per line, or is a vox1_meta.csv-style table
    with a ``Set`` column). CSV inputs keep their own ``partition`` column.
    ``official_test_split``: txt clips of VoxCeleb1's test identities (id10270..id10309) and
    of the official test annotations (``vox1_test_txt.zip``, ``vox2_test_txt.zip``, a ``test``
    folder) go to the test partition.

    ``input`` may also be a folder of your own videos (see ``video_folder``).
    """

    input: str = DEFAULT_INPUT
    out: str = DEFAULT_OUT
    min_frames: int = 32
    box_policy: Literal["clip", "drop"] = "clip"
    txt_units: Literal["auto", "fraction", "pixels"] = "auto"
    test_identities: list[str] = field(default_factory=list)
    test_identities_file: str = ""
    official_test_split: bool = True

    def validate(self) -> None:
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be at least 1, got {self.min_frames}")
        if not self.out:
            raise ValueError("out must be a file path such as artifacts/metadata/clips.parquet")
