"""The VoxCeleb txt track of each utterance: the reference box the speaker's face is matched to.

The clips table keeps only each utterance's union box, so the tubes stage reads the same
annotations the metadata stage read (``metadata.input``). Files are visited in name order,
which groups them by person and video (``txt/idXXXXX/<video>/00001.txt``); only groups
present in the clips table are parsed, one group at a time, so memory holds one video's
tracks, not the dataset's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pipeline.ids import make_clip_id
from pipeline.metadata import txt_format
from pipeline.metadata.records import RowError

Track = tuple[tuple[int, ...], tuple[tuple[float, float, float, float], ...]]


def _groups(files: list[txt_format.AnnotationFile]) -> Iterator[tuple[tuple[str, str], list[txt_format.AnnotationFile]]]:
    current: tuple[str, str] | None = None
    members: list[txt_format.AnnotationFile] = []
    for file in files:
        if len(file.parts) < 3:
            continue
        key = (file.parts[-3], file.parts[-2])
        if key != current and members:
            yield current, members  # type: ignore[misc]
            members = []
        current = key
        members.append(file)
    if members:
        yield current, members  # type: ignore[misc]


def reference_tracks(path: Path, wanted: set[tuple[str, str]]) -> Iterator[tuple[tuple[str, str], dict[str, Track]]]:
    """((person, video), {clip_id: (frames, xywh boxes)}) for the wanted groups of a txt tree or zip.

    Files the metadata stage rejected (unparsable) are skipped here too: their clips are
    not in the clips table.
    """
    if path.is_dir():
        files = txt_format.list_tree(path, str(path))
        archive = None
    else:
        archive, files = txt_format.list_zip(path, str(path))
    try:
        for key, members in _groups(files):
            if key not in wanted:
                continue
            tracks: dict[str, Track] = {}
            for file in members:
                try:
                    if file.size > txt_format.MAX_FILE_BYTES:
                        continue
                    annotation = txt_format.parse_annotation(file.read().decode("utf-8-sig"))
                except (RowError, UnicodeDecodeError):
                    continue
                clip_id = make_clip_id(key[0], key[1], annotation.frames[0], annotation.frames[-1] + 1)
                tracks[clip_id] = (tuple(annotation.frames), tuple(annotation.boxes))
            yield key, tracks
    finally:
        if archive is not None:
            archive.close()
