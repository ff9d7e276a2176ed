"""The metadata stage: real CSV / txt / zip inputs generated here, the shared real sample, the real CLI."""

from __future__ import annotations

import contextlib
import csv
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from fomm_core.errors import FommError
from pipeline.ids import parse_clip_id
from pipeline.metadata.build import build
from pipeline.metadata.config import MetadataConfig
from pipeline.metadata.identities import load_test_identities
from pipeline.metadata.tables import clips_table, rejects_table
from pipeline.params import load_section

sys.path.insert(0, str(Path(__file__).parent))
from _output_helpers import immutable_folder, run_fomm_measured  # noqa: E402

# Real published rows (198 of VoxCeleb1's vox-metadata.csv), kept in the repo so a fresh clone tests them.
SAMPLE = Path(__file__).resolve().parents[1] / "metadata" / "vox-metadata-sample.csv"
HEADER = "video_id,start,end,bbox,fps,width,height,partition,person_id"
ROOT = Path(__file__).resolve().parents[1]


def frames_of(inputs, table_folder: Path | None = None, **config) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = build([Path(p) for p in inputs], MetadataConfig(**config))
    folder = table_folder or Path(inputs[0]).parent
    return clips_table(result.clips, folder).to_pandas(), rejects_table(result.rejects).to_pandas()


def sample_frame() -> pd.DataFrame:
    """The sample read independently of the stage, with the box split into numbers."""
    raw = pd.read_csv(SAMPLE, dtype=str)
    box = raw["bbox"].str.split("-", expand=True).astype(int)
    raw[["left", "top", "right", "bottom"]] = box.to_numpy()
    for name in ("start", "end", "width", "height"):
        raw[name] = raw[name].astype(int)
    raw["key"] = raw["person_id"] + "#" + raw["video_id"] + "#" + raw["start"].map("{:06d}".format) + "#" + raw["end"].map("{:06d}".format)
    return raw


# ---------------------------------------------------------------- the real published sample

def test_sample_parses_with_quirks_clipped():
    raw = sample_frame()
    clips, rejects = frames_of([SAMPLE])
    duplicates = int(raw.drop(columns=["key"]).duplicated().sum())
    assert len(rejects) == duplicates and set(rejects["reason"]) <= {"duplicate"}
    assert len(clips) == len(raw) - duplicates
    assert clips["clip_id"].is_unique and list(clips["clip_id"]) == sorted(clips["clip_id"])
    merged = clips.merge(raw.drop_duplicates("key"), left_on="clip_id", right_on="key", suffixes=("", "_raw"))
    assert len(merged) == len(clips)
    # Frames other than 1280x720 keep their own size; the partition column survives.
    assert (merged["width"] == merged["width_raw"]).all() and (merged["height"] == merged["height_raw"]).all()
    assert set(zip(merged["width"], merged["height"])) == set(zip(raw["width"], raw["height"]))
    assert (merged["partition"] == merged["partition_raw"]).all()
    assert (clips["partition"] == "test").sum() == (raw.drop_duplicates("key")["partition"] == "test").sum() > 0
    # Boxes past the bottom are clamped to the frame and flagged; the others are untouched.
    past = merged["bottom_raw"] > merged["height_raw"]
    assert past.sum() > 0
    assert (merged["box_clipped"] == past).all()
    assert (merged.loc[past, "bottom"] == merged.loc[past, "height"]).all()
    assert (merged.loc[~past, "bottom"] == merged.loc[~past, "bottom_raw"]).all()
    assert (merged["left"] == merged["left_raw"]).all() and (merged["top"] == merged["top_raw"]).all()
    # CRLF endings must not leak into ids; urls default to YouTube.
    assert (clips["url"] == "https://www.youtube.com/watch?v=" + clips["video_id"]).all()
    assert not clips["person_id"].str.contains("\r").any()
    assert (clips["fps"] == 25.0).all()


def test_sample_drop_policy_rejects_boxes_past_the_frame():
    raw = sample_frame()
    past = int((raw["bottom"] > raw["height"]).sum())
    clips, rejects = frames_of([SAMPLE], box_policy="drop")
    assert (rejects["reason"] == "outside_frame").sum() == past > 0
    assert len(clips) == len(raw) - past
    assert not clips["box_clipped"].any()
    assert (clips["bottom"] <= clips["height"]).all()
    # Rows point back at the CSV line (header is line 1).
    lines = SAMPLE.read_text().splitlines()
    for row in rejects.itertuples():
        assert lines[row.row - 1].startswith(f"{row.video_id},{row.start},{row.end},")


def test_duplicates_and_conflicting_boxes(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    extra_dups = [lines[1], lines[7], lines[1]]
    first = lines[3].split(",")
    conflict = ",".join(first[:3] + ["1-2-300-400"] + first[4:])
    path = tmp_path / "vox.csv"
    path.write_text("\n".join(lines + extra_dups + [conflict]) + "\n")
    clips, rejects = frames_of([path])
    base, _ = frames_of([SAMPLE])
    assert len(clips) == len(base)
    dup = rejects[rejects["reason"] == "duplicate"]
    assert sorted(dup["row"]) == [len(lines) + 1, len(lines) + 2, len(lines) + 3]
    conf = rejects[rejects["reason"] == "conflicting_box"]
    assert list(conf["row"]) == [len(lines) + 4]
    assert "row 4" in conf["detail"].iloc[0]
    kept = clips.set_index("clip_id").loc[f"{first[8]}#{first[0]}#{int(first[1]):06d}#{int(first[2]):06d}"]
    assert [kept["left"], kept["top"]] == [float(v) for v in first[3].split("-")[:2]]


def test_inputs_concatenate_and_dedupe_across_files(tmp_path):
    copy = tmp_path / "again.csv"
    copy.write_bytes(SAMPLE.read_bytes())
    clips, rejects = frames_of([SAMPLE, copy])
    base, _ = frames_of([SAMPLE])
    assert len(clips) == len(base)
    assert (rejects["reason"] == "duplicate").sum() == len(base)
    assert set(rejects["source"]) == {str(copy)}
    assert set(clips["source"]) == {str(SAMPLE)}


# ---------------------------------------------------------------- malformed rows, hostile ids

GOOD = ["abcdefghijk", "100", "200", "10-20-110-140", "25", "640", "360", "train", "id10001"]


def variant(**changes) -> list[str]:
    names = HEADER.split(",")
    row = list(GOOD)
    for name, value in changes.items():
        row[names.index(name)] = value
    return row


CASES = [
    ("ok", variant()),
    ("malformed_id", variant(video_id="../../etc/passwd")),
    ("malformed_id", variant(video_id="a;rm -rf /")),
    ("malformed_id", variant(video_id="$(x)aaaaaaa")),
    ("malformed_id", variant(video_id="abcdefghij\u0456")),  # Cyrillic i lookalike
    ("malformed_id", variant(video_id="abcdefghijkl")),  # too long
    ("malformed_id", variant(video_id="abc")),  # too short
    ("malformed_id", variant(person_id="id1000\u0661")),  # Arabic-Indic digit one
    ("malformed_id", variant(person_id="../id10001")),
    ("malformed_id", variant(person_id="id100011")),
    ("malformed_row", variant(start="ten")),
    ("malformed_row", variant(start="-5")),
    ("malformed_row", variant(end="100")),  # end == start
    ("malformed_row", variant(end="50")),  # end < start
    ("malformed_row", variant(bbox="10-20-110")),
    ("malformed_row", variant(bbox="10 20 110 140")),
    ("malformed_row", variant(fps="0")),
    ("malformed_row", variant(fps="nan")),
    ("malformed_row", variant(width="0")),
    ("malformed_row", variant(height="wide")),
    ("malformed_row", variant(partition="validation")),
    ("malformed_row", GOOD[:5]),  # wrong column count
    ("malformed_row", GOOD + ["extra"]),
    ("empty_box", variant(bbox="10-20-10-140")),
    ("empty_box", variant(bbox="110-20-10-140")),  # inverted
    ("empty_box", variant(bbox="10-140-110-20")),
    ("outside_frame", variant(bbox="700-20-800-140")),  # entirely right of a 640 frame
    ("outside_frame", variant(bbox="10-400-110-500")),  # entirely below
    ("outside_frame", variant(bbox="-200--100--50--10")),  # entirely above-left
    ("too_short", variant(end="131")),  # 31 frames < 32
]


def test_malformed_rows_and_hostile_ids_get_their_reason(tmp_path):
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER.split(","))
        for index, (_, row) in enumerate(CASES):
            # distinct start per row so that valid ones never collide as duplicates
            if len(row) == 9 and row[1] == "100" and row[2] == "200":
                row = row[:1] + [str(1000 + 300 * index), str(1100 + 300 * index)] + row[3:]
            writer.writerow(row)
    clips, rejects = frames_of([path])
    by_row = dict(zip(rejects["row"], rejects["reason"]))
    for index, (expected, _) in enumerate(CASES):
        line = index + 2
        if expected == "ok":
            assert line not in by_row
        else:
            assert by_row.get(line) == expected, (CASES[index], rejects[rejects["row"] == line].to_dict("records"))
    assert len(clips) == sum(1 for e, _ in CASES if e == "ok")
    assert len(rejects) == len(CASES) - len(clips)
    # Every kept id is strictly ASCII and the clip id parses back to the row.
    for clip in clips.itertuples():
        assert parse_clip_id(clip.clip_id) == (clip.person_id, clip.video_id, clip.start, clip.end)


def test_partly_outside_box_is_clamped_or_dropped(tmp_path):
    path = tmp_path / "edge.csv"
    rows = [variant(bbox="-10-5-100-80"), variant(start="300", end="400", bbox="600-5-700-80"),
            variant(start="500", end="600", bbox="0-0-640-360")]
    path.write_text(HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    clips, rejects = frames_of([path])
    assert rejects.empty
    assert clips[["left", "right", "box_clipped"]].values.tolist() == [[0.0, 100.0, True], [600.0, 640.0, True], [0.0, 640.0, False]]
    clips, rejects = frames_of([path], box_policy="drop")
    assert list(clips["start"]) == [500]
    assert list(rejects["reason"]) == ["outside_frame"] * 2 and list(rejects["row"]) == [2, 3]


def test_min_frames_and_url_column(tmp_path):
    path = tmp_path / "synth.csv"
    video = tmp_path / "videos" / "abcdefghijk.mp4"
    path.write_text(
        HEADER + ",url\n"
        + ",".join(variant(end="140")) + f",file://{video}\n"
        + ",".join(variant(start="300", end="400")) + ",\n"
        + ",".join(variant(start="500", end="600")) + ",--exec=rm\n"
    )
    clips, rejects = frames_of([path], min_frames=41)
    assert list(rejects.sort_values("row")["reason"]) == ["too_short", "malformed_row"]
    assert list(clips["url"]) == ["https://www.youtube.com/watch?v=abcdefghijk"]
    clips, _ = frames_of([path], min_frames=40)
    assert list(clips["url"]) == [f"file://{video}", "https://www.youtube.com/watch?v=abcdefghijk"]


def test_relative_urls_are_kept_relative_to_the_clips_table(tmp_path):
    """A url relative to the CSV is rewritten relative to the clips table: no absolute path in it."""
    (tmp_path / "synth").mkdir()
    path = tmp_path / "synth" / "vox.csv"
    path.write_text(HEADER + ",url\n" + ",".join(variant(end="140")) + ",videos/abcdefghijk.mp4\n"
                    + ",".join(variant(start="300", end="400")) + ",/etc/passwd\n")
    clips, rejects = frames_of([path], table_folder=tmp_path / "metadata")
    assert list(clips["url"]) == ["../synth/videos/abcdefghijk.mp4"]
    assert list(rejects["reason"]) == ["malformed_row"]  # an absolute path is neither a URL nor relative


def test_clip_ids_are_stable_and_unique(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    body = lines[1:]
    random.Random(7).shuffle(body)
    (tmp_path / "a").mkdir()
    shuffled = tmp_path / "a" / SAMPLE.name
    shuffled.write_text("\n".join([lines[0]] + body) + "\n")
    one, _ = frames_of([SAMPLE])
    two, _ = frames_of([shuffled])
    assert one["clip_id"].is_unique
    pd.testing.assert_frame_equal(one.drop(columns=["source"]), two.drop(columns=["source"]))
    for clip in one.itertuples():
        assert clip.clip_id == f"{clip.person_id}#{clip.video_id}#{clip.start:06d}#{clip.end:06d}"


# ---------------------------------------------------------------- txt annotations

VOX1 = {  # pixels at height 360, 4-digit padded like the real files
    ("id10001", "1zcIwhmdeo4", "00001"): [(245, 255, 116, 96, 96), (246, 257, 114, 97, 99), (300, 250, 118, 95, 95)],
    ("id10001", "1zcIwhmdeo4", "00002"): [(1000 + i, 100 + i, 50, 80, 80) for i in range(40)],
    ("id10002", "C7k7C-PDvAA", "00001"): [(12, 10, 20, 100, 120), (60, 14, 16, 98, 126)],
}
VOX2 = {  # fractions of the frame
    ("id00012", "21Uxsk56VDQ", "00001"): [(75, 0.355, 0.149, 0.254, 0.452), (76, 0.351, 0.151, 0.258, 0.455), (120, 0.36, 0.14, 0.25, 0.45)],
    ("id00015", "0fijmz4vTVU", "00001"): [(0, 0.5, 0.2, 0.3, 0.5), (40, 0.45, 0.25, 0.3, 0.5)],
    ("id00015", "0fijmz4vTVU", "00002"): [(500, 0.7, 0.6, 0.3, 0.4), (560, 0.71, 0.61, 0.29, 0.39)],
}


def annotation_text(person: str, video: str, rows, pixels: bool) -> str:
    text = (
        f"Identity  : \t{person}\nReference : \t{video}\nOffset    : \t1\n"
        "FV Conf   : \t16.647\t(1)\nASD Conf  : \t4.493\n\nFRAME \tX \tY \tW \tH \n"
    )
    for frame, x, y, w, h in rows:
        if pixels:
            text += f"{frame:06d} \t{x:04d} \t{y:04d} \t{w:04d} \t{h:04d} \n"
        else:
            text += f"{frame:06d} \t{x:.3f} \t{y:.3f} \t{w:.3f} \t{h:.3f} \n"
    return text


def write_tree(root: Path, table: dict, pixels: bool) -> Path:
    for (person, video, utt), rows in table.items():
        path = root / "txt" / person / video / f"{utt}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(annotation_text(person, video, rows, pixels))
    return root


def write_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("txt/", "")
        archive.writestr("__MACOSX/txt/._junk.txt", "\x00\x05binary")
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def zip_of(path: Path, table: dict, pixels: bool) -> Path:
    files = {f"txt/{p}/{v}/{u}.txt": annotation_text(p, v, rows, pixels) for (p, v, u), rows in table.items()}
    return write_zip(path, files)


@pytest.mark.parametrize("container", ["tree", "txt_dir", "zip"])
@pytest.mark.parametrize("version", ["vox1", "vox2"])
def test_txt_annotations_one_clip_per_utterance(tmp_path, container, version):
    table, pixels = (VOX1, True) if version == "vox1" else (VOX2, False)
    if container == "zip":
        source = zip_of(tmp_path / "ann.zip", table, pixels)
    else:
        root = write_tree(tmp_path / "vox", table, pixels)
        source = root if container == "tree" else root / "txt"
    test_person = sorted({p for p, _, _ in table})[-1]
    clips, rejects = frames_of([source], test_identities=[test_person], min_frames=2)
    assert rejects.empty, rejects.to_dict("records")
    assert len(clips) == len(table)
    for (person, video, utt), rows in table.items():
        frames = [r[0] for r in rows]
        clip_id = f"{person}#{video}#{frames[0]:06d}#{frames[-1] + 1:06d}"
        clip = clips.set_index("clip_id").loc[clip_id]
        # union box over the rows, in the file's own units
        expected = (
            min(r[1] for r in rows), min(r[2] for r in rows),
            max(r[1] + r[3] for r in rows), max(r[2] + r[4] for r in rows),
        )
        assert clip[["left", "top", "right", "bottom"]].tolist() == pytest.approx(expected)
        if pixels:
            assert (clip["width"], clip["height"]) == (0, 360)
        else:
            assert (clip["width"], clip["height"]) == (1, 1)
        assert clip["partition"] == ("test" if person == test_person else "train")
        assert clip["url"] == f"https://www.youtube.com/watch?v={video}"
        assert clip["source"].endswith(f"{person}/{video}/{utt}.txt")
        assert clip["fps"] == 25.0
        assert not clip["box_clipped"]


def test_txt_units_override_and_min_frames(tmp_path):
    root = write_tree(tmp_path / "vox", VOX2, pixels=False)
    clips, _ = frames_of([root], txt_units="pixels", min_frames=2)
    assert set(zip(clips["width"], clips["height"])) == {(0, 360)}
    clips, rejects = frames_of([root], min_frames=50)  # spans 46, 41 and 61 frames
    assert list(clips["clip_id"]) == ["id00015#0fijmz4vTVU#000500#000561"]
    assert sorted(rejects["reason"]) == ["too_short", "too_short"]


def test_txt_box_past_frame_is_clamped(tmp_path):
    rows = [(10, 0.8, 0.9, 0.3, 0.3), (50, 0.7, 0.8, 0.2, 0.2)]
    root = write_tree(tmp_path / "vox", {("id00020", "abcdefghijk", "00001"): rows}, pixels=False)
    clips, _ = frames_of([root], min_frames=2)
    assert clips["box_clipped"].all()
    assert clips[["left", "top", "right", "bottom"]].values.tolist()[0] == pytest.approx([0.7, 0.8, 1.0, 1.0])


def test_txt_malformed_files_and_hostile_paths(tmp_path):
    good = annotation_text("id10001", "1zcIwhmdeo4", [(10, 1, 2, 30, 40), (60, 1, 2, 30, 40)], True)
    files = {
        "txt/id10001/1zcIwhmdeo4/00001.txt": good,
        "txt/id10001/1zcIwhmdeo4/00002.txt": good.replace("FRAME \tX", "FRAME \tXX"),
        "txt/id10001/1zcIwhmdeo4/00003.txt": good.replace("000060 \t0001", "000060 \tabcd"),
        "txt/id10001/1zcIwhmdeo4/00004.txt": good.split("FRAME")[0],
        "txt/id10001/1zcIwhmdeo4/00005.txt": good.replace("000060", "000005"),
        "txt/id10001/1zcIwhmdeo4/00006.txt": good.replace("0030 \t0040 \n", "0000 \t0040 \n"),
        "txt/id10001/1zcIwhmdeo4/00007.txt": good.replace("Identity  : \tid10001", "Identity  : \tid10999"),
        "txt/id10001/1zcIwhmdeo4/00008.txt": "just some text\n",
        "txt/../../etc/passwd/00001.txt": good,
        "txt/id10001/$(reboot)abc/00001.txt": good,
        "txt/id1000\u0661/1zcIwhmdeo4/00009.txt": good,
    }
    archive = write_zip(tmp_path / "bad.zip", files)
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr("txt/id10001/1zcIwhmdeo4/00010.txt", b"\xff\xfe not utf-8")
    clips, rejects = frames_of([archive], min_frames=2)
    assert list(clips["clip_id"]) == ["id10001#1zcIwhmdeo4#000010#000061"]
    reasons = {source.split("!", 1)[1]: reason for source, reason in zip(rejects["source"], rejects["reason"])}
    prefix = "txt/id10001/1zcIwhmdeo4/"
    assert reasons[prefix + "00002.txt"] == "malformed_row"
    assert reasons[prefix + "00003.txt"] == "malformed_row"
    assert reasons[prefix + "00004.txt"] == "malformed_row"
    assert reasons[prefix + "00005.txt"] == "malformed_row"
    assert reasons[prefix + "00006.txt"] == "empty_box"
    assert reasons[prefix + "00007.txt"] == "malformed_row"
    assert reasons[prefix + "00010.txt"] == "malformed_row"
    assert reasons["txt/../../etc/passwd/00001.txt"] == "malformed_id"
    assert reasons["txt/id10001/$(reboot)abc/00001.txt"] == "malformed_id"
    assert reasons["txt/id1000\u0661/1zcIwhmdeo4/00009.txt"] == "malformed_id"
    assert reasons[prefix + "00008.txt"] == "malformed_row"
    assert (rejects.loc[rejects["source"].str.endswith("00003.txt"), "row"] == 9).all()
    # nothing was extracted next to the archive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]


def test_test_identities_from_list_file_and_meta_tables(tmp_path):
    plain = tmp_path / "ids.txt"
    plain.write_text("# VoxCeleb1 test\nid10270\n\nid10271  # trailing comment\n")
    vox1 = tmp_path / "vox1_meta.csv"
    vox1.write_text("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
                    "id10001\tA.J._Buckley\tm\tIreland\tdev\nid10270\tX_Y\tm\tUSA\ttest\nid10309\tZ\tf\tUK\ttest\n")
    vox2 = tmp_path / "vox2_meta.csv"
    vox2.write_text("VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \nid00012 ,n000012 ,m ,dev \nid00015 ,n000015 ,f ,test \n")
    assert load_test_identities([], str(plain)) == {"id10270", "id10271"}
    assert load_test_identities(["id10001"], str(vox1)) == {"id10001", "id10270", "id10309"}
    assert load_test_identities([], str(vox2)) == {"id00015"}
    bad = tmp_path / "bad.txt"
    bad.write_text("id10270\n../x\n")
    with pytest.raises(FommError, match="line 2"):
        load_test_identities([], str(bad))
    with pytest.raises(FommError, match="not found"):
        load_test_identities([], str(tmp_path / "missing.txt"))
    root = write_tree(tmp_path / "vox", VOX2, pixels=False)
    clips, _ = frames_of([root], test_identities_file=str(vox2), min_frames=2)
    assert set(clips.loc[clips["partition"] == "test", "person_id"]) == {"id00015"}
    assert set(clips.loc[clips["partition"] == "train", "person_id"]) == {"id00012"}


# ---------------------------------------------------------------- the real CLI

def run_cli(tmp_path: Path, *args: str, params: str = "metadata: {}\n") -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(params)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "metadata", *args], cwd=tmp_path, capture_output=True, text=True,
        env=env, timeout=120,
    )


def test_cli_writes_both_tables_and_one_summary_line(tmp_path):
    archive = zip_of(tmp_path / "vox2.zip", VOX2, pixels=False)
    params = "metadata:\n  out: out/meta/clips.parquet\n  box_policy: drop\n  min_frames: 45\n  test_identities: [id00015]\n"
    done = run_cli(tmp_path, str(SAMPLE), "vox2.zip", params=params)
    assert done.returncode == 0, done.stderr
    clips = pd.read_parquet(tmp_path / "out/meta/clips.parquet")
    rejects = pd.read_parquet(tmp_path / "out/meta/rejects.parquet")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("metadata: ")
    assert f"{len(clips)} clips from {clips['video_id'].nunique()} videos" in lines[0]
    assert f"rejected {len(rejects)} " in lines[0]
    assert (rejects["reason"] == "outside_frame").sum() > 0 and (rejects["reason"] == "too_short").sum() == 1
    assert set(clips.loc[clips["source"] != str(SAMPLE), "partition"]) == {"train", "test"}
    assert archive.exists()
    assert not [p for p in (tmp_path / "out/meta").iterdir() if p.name.startswith(".")]
    # explicit paths win over params
    again = run_cli(tmp_path, str(SAMPLE), "--out", "c.parquet", "--rejects", "r/rej.parquet", params=params)
    assert again.returncode == 0, again.stderr
    assert len(pd.read_parquet(tmp_path / "c.parquet")) == len(clips[clips["source"] == str(SAMPLE)])
    assert (tmp_path / "r/rej.parquet").exists()


def make_error_inputs(tmp_path: Path) -> None:
    (tmp_path / "cols.csv").write_text("video_id,start,end,fps\nabcdefghijk,1,100,25\n")
    (tmp_path / "empty.csv").write_text(HEADER + "\n" + ",".join(variant(video_id="../../x")) + "\n")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    (tmp_path / "emptydir").mkdir()
    rows = [(i, 10, 20, 30 + i % 7, 40) for i in range(200)]
    name = "txt/id10001/abcdefghijk/00001.txt"
    member = write_zip(tmp_path / "member.zip", {name: annotation_text("id10001", "abcdefghijk", rows, True)})
    data = bytearray(member.read_bytes())
    offset = data.index(name.encode()) + len(name) + 20  # inside the deflated bytes
    data[offset:offset + 8] = bytes(b ^ 0xFF for b in data[offset:offset + 8])
    member.write_bytes(bytes(data))


CLI_ERRORS = {
    "missing_input": (["nope.csv"], "nope.csv: input not found"),
    "missing_columns": (["cols.csv"], "missing column(s) bbox"),
    "empty_result": (["empty.csv"], "no clips left from 1 rows (malformed_id 1)"),
    "corrupt_zip": (["broken.zip"], "broken.zip: not a readable zip archive"),
}


@pytest.mark.parametrize("case", sorted(CLI_ERRORS))
def test_cli_errors_are_one_line(tmp_path, case):
    make_error_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    args, message = CLI_ERRORS[case]
    done = run_cli(tmp_path, *args, params="metadata: {out: out/clips.parquet}\n")
    assert done.returncode == 2, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("name, message", [
    ("member.zip", "member.zip: member 'txt/id10001/abcdefghijk/00001.txt' is corrupt"),
    ("emptydir", "emptydir: no .txt annotation files"),
    ("cols.csv", "missing column(s) bbox"),
])
def test_input_errors_name_the_file(tmp_path, name, message):
    make_error_inputs(tmp_path)
    with pytest.raises(FommError) as error:
        build([tmp_path / name], MetadataConfig())
    assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_params_name_the_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("metadata:\n  box_policy: crop\n")
    with pytest.raises(FommError, match="metadata.box_policy: expected one of 'clip', 'drop', got 'crop'"):
        load_section(params, "metadata", MetadataConfig)
    params.write_text("metadata:\n  min_frames: 0\n")
    with pytest.raises(FommError, match="min_frames must be at least 1"):
        load_section(params, "metadata", MetadataConfig)
    params.write_text("synth:\n  seed: 1\n")  # no metadata section: the defaults, with a note
    assert load_section(params, "metadata", MetadataConfig) == MetadataConfig()


# ---------------------------------------------------------------- hostile inputs and outputs

def bomb_zip(path: Path, inflated: int, declared: int | None = None, members: int = 1) -> Path:
    """``members`` members of ``inflated`` zero bytes each; headers may lie (``declared``)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for k in range(members):
            info = zipfile.ZipInfo(f"txt/id10001/abcdefghijk/{k + 1:05d}.txt")
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=False) as handle:
                chunk = b"0" * (1 << 20)
                for offset in range(0, inflated, len(chunk)):
                    handle.write(chunk[: inflated - offset])
    if declared is not None:  # patch both headers' uncompressed size
        data = bytearray(path.read_bytes())
        for signature, field in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            start = data.index(signature)
            data[start + field: start + field + 4] = declared.to_bytes(4, "little")
        path.write_bytes(bytes(data))
    return path


def run_measured(tmp_path: Path, *args: str) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in MB) of `fomm metadata ARGS` in its own process."""
    (tmp_path / "params.yaml").write_text("metadata: {out: out/clips.parquet}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    done, peak_mb = run_fomm_measured(["metadata", *args], tmp_path, env)
    return done.returncode, done.stderr, peak_mb


def test_zip_bomb_lying_header_is_read_with_a_hard_cap(tmp_path):
    """1 GiB of zeros deflated to ~1 MB, the headers claiming 1000 bytes."""
    bomb = bomb_zip(tmp_path / "bomb.zip", 1 << 30, declared=1000)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    code, stderr, rss_mb = run_measured(tmp_path, "bomb.zip")
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert "bomb.zip: member 'txt/id10001/abcdefghijk/00001.txt' is corrupt" in stderr
    assert rss_mb < 400, f"peak RSS {rss_mb} MB"


def test_zip_bombs_honest_header_and_many_members_are_capped(tmp_path):
    bomb_zip(tmp_path / "big.zip", (16 << 20) + 1)  # one member just past the 16 MB annotation cap
    code, stderr, rss_mb = run_measured(tmp_path, "big.zip")
    assert code == 2 and "no clips left from 1 rows (malformed_row 1)" in stderr and rss_mb < 400, stderr
    many = bomb_zip(tmp_path / "many.zip", 15 << 20, members=20)  # each under 16 MB, 300 MB in all
    assert many.stat().st_size * 100 < 256 << 20
    code, stderr, rss_mb = run_measured(tmp_path, "many.zip")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "members inflate to more than 100 times the zip's size" in stderr and rss_mb < 400
    with zipfile.ZipFile(tmp_path / "bz.zip", "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("txt/id10001/abcdefghijk/00001.txt", b"0" * 1000)
    with pytest.raises(FommError, match=r"no clips left from 1 rows \(malformed_row 1\)"):
        build([tmp_path / "bz.zip"], MetadataConfig())


@pytest.mark.parametrize("case", ["foreign_text", "foreign_parquet", "proc", "file_as_folder", "inside_input",
                                  "immutable"])
def test_cli_out_refuses_what_metadata_did_not_write_before_any_work(tmp_path, case):
    (tmp_path / "afile").write_text("x")
    tree = tmp_path / "tree"
    (tree / "txt").mkdir(parents=True)
    out, expected = {
        "foreign_text": ("clips.parquet", "exists and was not written by `fomm metadata`"),
        "foreign_parquet": ("clips.parquet", "exists and was not written by `fomm metadata`"),
        "proc": ("/proc/fomm-meta/clips.parquet", "cannot write in /proc"),
        "file_as_folder": ("afile/clips.parquet", "is a file, not a folder"),
        "inside_input": ("tree/clips.parquet", "lies inside the input folder"),
        "immutable": ("locked/clips.parquet", "cannot write in"),
    }[case]
    if case == "foreign_text":
        (tmp_path / "clips.parquet").write_text("PRECIOUS")
    if case == "foreign_parquet":
        pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "clips.parquet")
    args = [str(SAMPLE), "tree"] if case == "inside_input" else [str(SAMPLE)]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "params.yaml"}
    with immutable_folder(tmp_path / "locked") if case == "immutable" else contextlib.nullcontext():
        done = run_cli(tmp_path, *args, "--out", out, "--rejects", "rejects.parquet")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "params.yaml"}
    assert after == before


def test_cli_replaces_its_own_tables_and_stamps_them(tmp_path):
    import pyarrow.parquet as pq

    for _ in range(2):
        done = run_cli(tmp_path, str(SAMPLE), "--out", "clips.parquet")
        assert done.returncode == 0, done.stderr
    for name in ("clips.parquet", "rejects.parquet"):
        assert pq.read_schema(tmp_path / name).metadata[b"fomm.command"] == b"metadata"


def test_option_like_video_ids_are_rejected(tmp_path):
    rows = [variant(video_id=v) for v in ("-oProxyComm", "-i_________", "--exec_____")]
    path = tmp_path / "opts.csv"
    path.write_text(HEADER + "\n" + "\n".join(",".join(r) for r in rows) + "\n" + ",".join(variant()) + "\n")
    clips, rejects = frames_of([path], min_frames=1)
    assert len(clips) == 1 and list(rejects["reason"]) == ["malformed_id"] * 3
    assert all("not starting with '-'" in d for d in rejects["detail"])
