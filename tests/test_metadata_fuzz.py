"""Fuzzing the metadata readers: every input is parsed, rejected with a reason, or refused
with one line, and whatever is kept can be written as the clips and rejects tables.

A seeded generator (no extra dependency, the same inputs on every run) mutates valid CSV
rows and txt annotation files with hostile values: huge and negative numbers, NaN and
infinities, option-like and Unicode ids, quotes, separators, control bytes, truncation,
invalid UTF-8. Bounded by a time budget so CI stays well under a minute.
"""

from __future__ import annotations

import random
import time
import zipfile
from pathlib import Path

import pytest

from fomm_core.errors import FommError
from pipeline.metadata.build import build
from pipeline.metadata.config import MetadataConfig
from pipeline.metadata.records import REASONS
from pipeline.metadata.tables import clips_table, rejects_table, write_table

SEED = 20240607
BUDGET_S = 20.0  # per format

HEADER = "video_id,start,end,bbox,fps,width,height,partition,person_id,url"
GOOD_ROW = ["WMh3ye5tBsE", "100", "200", "624-48-1018-553", "25", "1280", "720", "train", "id10005",
            "https://www.youtube.com/watch?v=WMh3ye5tBsE"]
NASTY = [
    "", " ", "-", "0", "-1", "1e309", "-1e309", "nan", "NaN", "inf", "-inf", "9" * 25, "9" * 400,
    "9223372036854775808", "18446744073709551616", "1.5", "0x10", "1_000", "١٢٣", "\u00a0", "\x00",
    "-oProxyComm", "-i_________", "--exec_____", "../../etc/pa", "a;rm -rf /x", "$(reboot)xx",
    "WMh3ye5tBs\u0415", "id1000\u0661", "id99999", "test", "TRAIN", "file:///etc/passwd",
    "http://", "https://h/\x7f", '"', '""', "a,b", "a\nb", "\r", "\t", "x" * 5000,
    "1-2-3-4", "-1--2--3--4", "1-2-3", "1e5-1e5-2e5-2e5", "0-0-0-0", "5-5-1-1",
    "99999999999999999999-1-2-3", "1-2-99999999999999999999-99999999999999999999",
]


def mutate_csv(rng: random.Random) -> bytes:
    header = HEADER.split(",")
    if rng.random() < 0.1:
        rng.shuffle(header)
    if rng.random() < 0.05:
        header.pop(rng.randrange(len(header)))
    lines = [",".join(header)]
    for _ in range(rng.randint(0, 6)):
        row = dict(zip(HEADER.split(","), GOOD_ROW))
        for _ in range(rng.randint(0, 4)):
            row[rng.choice(list(row))] = rng.choice(NASTY)
        values = [row.get(name, "") for name in header]
        if rng.random() < 0.1:
            values = values[: rng.randrange(len(values) + 1)]
        if rng.random() < 0.1:
            values.append(rng.choice(NASTY))
        quoted = [f'"{v}"' if rng.random() < 0.1 else v for v in values]
        lines.append(",".join(quoted))
    data = ("\r\n" if rng.random() < 0.2 else "\n").join(lines).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.1:
        cut = rng.randrange(len(data) + 1)
        data = data[:cut]
    if rng.random() < 0.05:
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    if rng.random() < 0.05:
        data = data.replace(b"W", b"\xff", 1)
    return data


def mutate_txt(rng: random.Random) -> bytes:
    header = ["Identity  : \tid10001", "Reference : \t1zcIwhmdeo4", "Offset    : \t1",
              "FV Conf   : \t16.647\t(1)", "ASD Conf  : \t4.493", "", "FRAME \tX \tY \tW \tH "]
    rows = [f"{245 + i:06d} \t0255 \t0116 \t0096 \t0096 " for i in range(rng.randint(0, 40))]
    if rows and rng.random() < 0.1:  # a last FRAME past int64: the clip's end would overflow
        rows[-1] = rows[-1].replace(rows[-1].split()[0], "9" * rng.choice((10, 19, 20, 30)), 1)
    lines = header + rows
    for _ in range(rng.randint(0, 4)):
        index = rng.randrange(len(lines))
        tokens = lines[index].split("\t")
        tokens[rng.randrange(len(tokens))] = rng.choice(NASTY)
        lines[index] = "\t".join(tokens)
    if rng.random() < 0.1:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(NASTY))
    if rng.random() < 0.1:
        del lines[rng.randrange(len(lines))]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        data = data[: rng.randrange(len(data) + 1)]
    if rng.random() < 0.05:
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    return data


def outcome(inputs: list[Path], tmp: Path) -> str:
    """'parsed', 'refused' (a one-line FommError), or the test fails with the input named."""
    try:
        result = build(inputs, MetadataConfig(min_frames=1))
    except FommError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        return "refused"
    for reject in result.rejects:
        assert reject.reason in REASONS and reject.detail
    write_table(clips_table(result.clips, tmp), tmp / "clips.parquet")  # int64 columns must hold
    write_table(rejects_table(result.rejects), tmp / "rejects.parquet")
    return "parsed"


def run_for(budget: float, make_case) -> dict[str, int]:
    counts = {"parsed": 0, "refused": 0}
    deadline = time.monotonic() + budget
    case = 0
    while time.monotonic() < deadline and case < 3000:
        inputs, tmp, description = make_case(case)
        try:
            counts[outcome(inputs, tmp)] += 1
        except BaseException as exc:  # noqa: BLE001 - name the input that broke it
            pytest.fail(f"case {case} ({description}): {type(exc).__name__}: {exc}")
        case += 1
    return counts


def test_fuzz_csv(tmp_path):
    rng = random.Random(SEED)

    def make(case: int):
        folder = tmp_path / f"c{case}"
        folder.mkdir()
        path = folder / "meta.csv"
        data = mutate_csv(rng)
        path.write_bytes(data)
        return [path], folder, repr(data[:400])

    counts = run_for(BUDGET_S, make)
    assert counts["parsed"] > 20 and counts["refused"] > 5, counts  # the generator reaches both


def test_fuzz_txt_trees_and_zips(tmp_path):
    rng = random.Random(SEED + 1)

    def make(case: int):
        folder = tmp_path / f"t{case}"
        files = {}
        for _ in range(rng.randint(1, 3)):
            person = rng.choice(["id10001", "id10002", rng.choice(NASTY)[:20] or "x"])
            video = rng.choice(["1zcIwhmdeo4", "WMh3ye5tBsE", "-oProxyComm", rng.choice(NASTY)[:20] or "y"])
            name = f"txt/{person}/{video}/{rng.randint(1, 3):05d}.txt"
            if "\x00" in name or "\n" in name or "\r" in name:
                name = "txt/id10001/1zcIwhmdeo4/00001.txt"
            files[name] = mutate_txt(rng)
        if rng.random() < 0.5:
            folder.mkdir()
            path = folder / "txt.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                for name, data in files.items():
                    archive.writestr(name, data)
        else:
            path = folder / "tree"
            for name, data in files.items():
                target = path / name
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                except OSError:  # a name the filesystem refuses: nothing to test
                    continue
            path.mkdir(parents=True, exist_ok=True)
        return [path], folder, repr({k: v[:200] for k, v in files.items()})

    counts = run_for(BUDGET_S, make)
    assert counts["parsed"] > 20 and counts["refused"] > 5, counts


def test_fuzz_corpus_examples_stay_fixed(tmp_path):
    """Inputs the fuzzer once broke on, kept as plain regression cases."""
    cases = {
        "huge_end.csv": f"{HEADER}\nWMh3ye5tBsE,0,{'9' * 25},624-48-1018-553,25,1280,720,train,id10005,\n",
        "huge_width.csv": f"{HEADER}\nWMh3ye5tBsE,0,100,624-48-1018-553,25,{'9' * 20},720,train,id10005,\n",
        "inf_bbox.csv": f"{HEADER}\nWMh3ye5tBsE,0,100,{'9' * 400}-1-2-3,25,1280,720,train,id10005,\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert outcome([path], tmp_path) == "refused", name  # its only row rejected: no clips
    tree = tmp_path / "tree" / "txt" / "id10001" / "1zcIwhmdeo4"
    tree.mkdir(parents=True)
    (tree / "00001.txt").write_text("Identity : id10001\n\nFRAME X Y W H\n" + "9" * 25 + " 1 1 5 5\n")
    assert outcome([tmp_path / "tree"], tmp_path) == "refused"
