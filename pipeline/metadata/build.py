"""From the INPUT paths to checked clips and rejects: picks a reader per input, runs the checks."""

from __future__ import annotations

import dataclasses
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fomm_core.errors import FommError
from pipeline.progress import track

from . import csv_format, txt_format, video_folder
from .checks import check_all
from .config import MetadataConfig
from .identities import in_test_folder, is_official_test_input, load_test_identities
from .records import Candidate, Clip, Reject, RowError, short


@dataclass
class Result:
    clips: list[Clip]
    rejects: list[Reject]

    def summary(self) -> str:
        videos = len({c.video_id for c in self.clips})
        people = len({c.person_id for c in self.clips})
        parts = Counter(c.partition for c in self.clips)
        reasons = Counter(r.reason for r in self.rejects)
        why = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        clipped = sum(c.box_clipped for c in self.clips)
        return (
            f"metadata: {len(self.clips)} clips from {videos} videos, {people} identities "
            f"({parts['train']} train / {parts['test']} test); rejected {len(self.rejects)}"
            f"{f' ({why})' if why else ''}; clipped {clipped} boxes"
        )


def kind_of(path: Path) -> str:
    if not path.exists():
        raise FommError(f"{path}: input not found; pass a vox-metadata CSV, a txt annotation folder or zip")
    if path.is_dir():
        return "videos" if video_folder.is_video_folder(path) else "tree"
    if path.suffix.lower() == ".zip" or (path.suffix.lower() != ".csv" and zipfile.is_zipfile(path)):
        return "zip"
    return "csv"


def _txt_candidates(files: list[txt_format.AnnotationFile], config: MetadataConfig,
                    test_ids: frozenset[str], label: str, all_test: bool = False) -> Iterator[Candidate | Reject]:
    for file in track(files, len(files), f"reading {label}"):
        try:
            candidate = txt_format.read_annotation(file, config.txt_units, test_ids)
            official = config.official_test_split and (all_test or in_test_folder(file.parts))
            yield dataclasses.replace(candidate, partition="test") if official else candidate
        except RowError as exc:
            parts = file.parts
            yield Reject(
                file.source, exc.line or 1, short(parts[-2] if len(parts) >= 3 else ""),
                short(parts[-3] if len(parts) >= 3 else ""), None, None, exc.reason, str(exc),
            )


def read_input(path: Path, config: MetadataConfig, test_ids: frozenset[str]) -> Iterator[Candidate | Reject]:
    source = str(path)
    kind = kind_of(path)
    if kind == "csv":
        total = max(csv_format.count_lines(path) - 1, 0)
        yield from track(csv_format.read_csv(path, source), total, f"reading {path.name}")
        return
    if kind == "videos":
        yield from video_folder.read_folder(path, test_ids)
        return
    official = is_official_test_input(path)
    if kind == "tree":
        files = txt_format.list_tree(path, source)
        if not files:
            raise FommError(f"{path}: no .txt annotation files or videos found (expected txt/idXXXXX/<video>/00001.txt, "
                            "or a folder of videos)")
        yield from _txt_candidates(files, config, test_ids, path.name, official)
        return
    archive, files = txt_format.list_zip(path, source)
    with archive:
        if not files:
            raise FommError(f"{path}: the zip holds no .txt annotation files (expected txt/idXXXXX/<video>/00001.txt)")
        yield from _txt_candidates(files, config, test_ids, path.name, official)


def build(inputs: list[Path], config: MetadataConfig) -> Result:
    """All inputs concatenated in the given order, checked and de-duplicated together."""
    if not inputs:
        raise FommError("no INPUT given; pass a vox-metadata CSV, a txt annotation folder or zip")
    for path in inputs:
        kind_of(path)  # fail on a missing input before reading anything
    test_ids = load_test_identities(config.test_identities, config.test_identities_file, config.official_test_split)
    counted = 0

    def everything() -> Iterator[Candidate | Reject]:
        nonlocal counted
        for path in inputs:
            for item in read_input(path, config, test_ids):
                counted += 1
                yield item

    clips, rejects = check_all(everything(), config.box_policy, config.min_frames)
    if not clips:
        reasons = Counter(r.reason for r in rejects)
        why = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())) or "no data rows"
        raise FommError(f"no clips left from {counted} rows ({why}); check the inputs and metadata params")
    return Result(clips, rejects)
