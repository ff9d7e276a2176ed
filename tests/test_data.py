"""fomm_core.data over real shards built by `fomm shard` from generated clips."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _shard_helpers import CLIPS, decode_mp4_rgb, make_crop_dir, run_shard, write_params
from fomm_core.data import (
    AugmentConfig, ClipFramesDataset, DatasetRepeater, FramePairDataset, ShardStore, seed_worker,
    to_float,
)
from fomm_core.errors import FommError

FRAMES_PER_SHARD = 40
OK = [c for c in CLIPS if c.status == "ok"]
TRAIN = [c for c in OK if c.partition == "train"]
TEST = sorted((c for c in OK if c.partition == "test"), key=lambda c: c.clip_id)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("data")
    make_crop_dir(root)
    write_params(root, frames_per_shard=FRAMES_PER_SHARD, image_format="png", workers=2)  # lossless: exact frames
    result = run_shard(root, "clips", "--out", "shards", "--groundtruth", "groundtruth")
    assert result.returncode == 0, result.stderr
    frames = {c.clip_id: decode_mp4_rgb(root / "clips" / c.partition / f"{c.clip_id}.mp4") for c in OK}
    return root / "shards", frames


def as_float(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0


def test_id_sampling_length_and_people(shards):
    root, _ = shards
    ds = FramePairDataset(root, "train")
    assert len(ds) == len({c.person for c in TRAIN}) == 2
    assert len(FramePairDataset(root, "train", id_sampling=False)) == len(TRAIN)
    assert len(FramePairDataset(root, "test")) == 2
    torch.manual_seed(0)
    picked = Counter(ds[0]["clip_id"] for _ in range(60))
    # Item 0 is person id00001: every one of their clips gets picked, nobody else's.
    assert set(picked) == {c.clip_id for c in TRAIN if c.person == "id00001"}
    assert {ds[1]["clip_id"] for _ in range(5)} == {c.clip_id for c in TRAIN if c.person == "id00002"}
    with pytest.raises(IndexError):
        ds[2]


def test_pair_is_two_distinct_exact_frames_of_one_clip(shards):
    root, frames = shards
    ds = FramePairDataset(root, "train", id_sampling=False)
    torch.manual_seed(1)
    seen = set()
    for idx in range(len(ds)):
        for _ in range(5):
            item = ds[idx]
            i, j = item["frames"]
            assert i < j  # no augmentation: source is the earlier frame
            assert item["source"].shape == (3, 64, 64) and item["source"].dtype == torch.float32
            assert item["source"].is_contiguous()
            torch.testing.assert_close(item["source"], as_float(frames[item["clip_id"]][i]), rtol=0, atol=0)
            torch.testing.assert_close(item["driving"], as_float(frames[item["clip_id"]][j]), rtol=0, atol=0)
            seen.add((item["clip_id"], i, j))
    assert len(seen) > 15


def test_pair_reads_only_its_two_frames(shards):
    root, _ = shards
    store = ShardStore(root)
    ds = FramePairDataset(store, "train", id_sampling=False)
    longest = max(range(len(ds)), key=lambda k: ds.clips[k].num_frames)
    torch.manual_seed(2)
    for _ in range(20):
        before = store.frames_read
        ds[longest]
        assert store.frames_read - before == 2
    before = store.frames_read
    batches = list(store.iter_frames(ds.clips[longest], batch=5))
    n = ds.clips[longest].num_frames
    assert store.frames_read - before == n
    assert [len(b) for b in batches] == [5] * (n // 5) + ([n % 5] if n % 5 else [])


def test_horizontal_flip_really_flips(shards):
    root, _ = shards
    plain = FramePairDataset(root, "train", augment=AugmentConfig.off())
    flip = FramePairDataset(root, "train", augment=AugmentConfig(horizontal_flip=1.0, time_flip=0.0, jitter=0.0))
    torch.manual_seed(3)
    a = plain[0]
    torch.manual_seed(3)
    b = flip[0]
    assert a["frames"] == b["frames"] and a["clip_id"] == b["clip_id"]
    torch.testing.assert_close(b["source"], torch.flip(a["source"], dims=[2]), rtol=0, atol=0)
    torch.testing.assert_close(b["driving"], torch.flip(a["driving"], dims=[2]), rtol=0, atol=0)
    assert not torch.equal(a["source"], b["source"])


def test_time_flip_swaps_source_and_driving(shards):
    root, _ = shards
    plain = FramePairDataset(root, "train", augment=AugmentConfig.off())
    swap = FramePairDataset(root, "train", augment=AugmentConfig(horizontal_flip=0.0, time_flip=1.0, jitter=0.0))
    torch.manual_seed(4)
    a = plain[1]
    torch.manual_seed(4)
    b = swap[1]
    assert b["frames"] == a["frames"][::-1] and b["frames"][0] > b["frames"][1]
    assert torch.equal(b["source"], a["driving"]) and torch.equal(b["driving"], a["source"])


def test_colour_jitter_same_for_both_frames(shards):
    root, _ = shards
    plain = FramePairDataset(root, "train", augment=AugmentConfig.off())
    bright = AugmentConfig(horizontal_flip=0.0, time_flip=0.0, jitter=1.0,
                           brightness=0.5, contrast=0.0, saturation=0.0, hue=0.0)
    jitter = FramePairDataset(root, "train", augment=bright)
    factors = []
    for seed in range(6):
        torch.manual_seed(seed)
        a = plain[0]
        torch.manual_seed(seed)
        b = jitter[0]
        pair = []
        for key in ("source", "driving"):
            ok = (a[key] > 0.1) & (b[key] < 0.99)
            pair.append((b[key][ok] / a[key][ok]).median().item())
            assert torch.allclose(b[key][ok], a[key][ok] * pair[-1], atol=0.01)
        assert pair[0] == pytest.approx(pair[1], abs=0.005)  # one factor for the pair
        assert 0.5 - 0.01 <= pair[0] <= 1.5 + 0.01
        factors.append(pair[0])
    assert np.ptp(factors) > 0.05  # a new factor per item
    full = FramePairDataset(root, "train", augment=AugmentConfig(horizontal_flip=0.0, time_flip=0.0))
    torch.manual_seed(9)
    c = full[0]
    assert 0.0 <= c["source"].min() and c["source"].max() <= 1.0


def _epoch(loader: DataLoader) -> list[tuple[str, tuple[int, int]]]:
    out = []
    for batch in loader:
        for k, clip_id in enumerate(batch["clip_id"]):
            out.append((clip_id, (int(batch["frames"][0][k]), int(batch["frames"][1][k]))))
    return out


def test_worker_seeding_differs_per_worker_and_repeats(shards):
    root, _ = shards
    # One clip, repeated: every item samples the same population of frame pairs.
    ds = FramePairDataset(root, "train", id_sampling=False)
    ds.clips = [max(ds.clips, key=lambda c: c.num_frames)]
    data = DatasetRepeater(ds, 16)

    def loader() -> DataLoader:
        return DataLoader(data, batch_size=4, num_workers=2, worker_init_fn=seed_worker)

    torch.manual_seed(5)
    first = _epoch(loader())
    torch.manual_seed(5)
    assert _epoch(loader()) == first  # same seed, same pairs
    torch.manual_seed(6)
    assert _epoch(loader()) != first
    # Batches alternate between the two workers; a shared seed would repeat the pairs.
    worker0 = [first[b * 4:(b + 1) * 4] for b in range(0, 4, 2)]
    worker1 = [first[b * 4:(b + 1) * 4] for b in range(1, 4, 2)]
    assert worker0 != worker1
    assert len(set(first)) > len(first) // 2
    # Second epoch of the same loader: new pairs.
    torch.manual_seed(5)
    it = loader()
    assert _epoch(it) == first and _epoch(it) != first


def test_main_process_reproducible(shards):
    root, _ = shards
    ds = FramePairDataset(root, "train")
    torch.manual_seed(7)
    a = [ds[k % 2]["frames"] for k in range(10)]
    torch.manual_seed(7)
    b = [ds[k % 2]["frames"] for k in range(10)]
    assert a == b and len(set(a)) > 1


def test_repeater(shards):
    root, _ = shards
    ds = FramePairDataset(root, "train")
    rep = DatasetRepeater(ds, 3)
    assert len(rep) == 3 * len(ds)
    assert rep[len(ds) + 1]["clip_id"].startswith(ds.people[1])
    with pytest.raises(IndexError):
        rep[len(rep)]
    with pytest.raises(ValueError):
        DatasetRepeater(ds, 0)


def test_clip_frames_in_order_with_groundtruth(shards):
    root, frames = shards
    ds = ClipFramesDataset(root, "test", with_audio=True)
    assert [ds[k]["clip_id"] for k in range(len(ds))] == [c.clip_id for c in TEST]
    for k, clip in enumerate(TEST):
        item = ds[k]
        expected = torch.from_numpy(frames[clip.clip_id]).permute(0, 3, 1, 2).float() / 255.0
        assert item["frames"].shape == (clip.frames, 3, 64, 64)
        torch.testing.assert_close(item["frames"], expected, rtol=0, atol=0)
        assert item["gt_landmarks"].shape == (clip.frames, 5, 2)
        assert item["logmel"].shape == (4 * clip.frames, 26)
        streamed = list(ds.iter_clip_frames(clip.clip_id, batch=3))
        assert all(len(b) <= 3 for b in streamed)
        torch.testing.assert_close(torch.cat(streamed), expected, rtol=0, atol=0)
    assert len(ClipFramesDataset(root, None)) == len(OK)


def test_clip_frames_resized_to_the_training_resolution(shards):
    root, frames = shards
    clip = TEST[0]
    full = ClipFramesDataset(root, "test")
    small = ClipFramesDataset(root, "test", frame_size=32)
    item = small[0]
    assert item["frames"].shape == (clip.frames, 3, 32, 32)
    assert item["gt_landmarks"].shape == (clip.frames, 5, 2)  # landmarks stay in shard pixels
    streamed = torch.cat(list(small.iter_clip_frames(clip.clip_id, batch=4)))
    torch.testing.assert_close(streamed, item["frames"], rtol=0, atol=0)
    # an antialiased 2x downscale is close to the mean of each 2x2 block, and stays in [0, 1]
    pooled = torch.nn.functional.avg_pool2d(full[0]["frames"], 2)
    assert (streamed - pooled).abs().mean() < 0.05
    assert streamed.min() >= 0 and streamed.max() <= 1


def test_store_survives_pickling_and_fork(shards):
    root, frames = shards
    store = ShardStore(root)
    clip = store.select("train")[0]
    store.read_frames(clip, [0])  # opens a file handle in this process
    assert store.open_shards == 1
    payload = pickle.dumps(store)
    assert len(payload) < 2000  # the on-disk index travels as its path, not its rows
    clone = pickle.loads(payload)
    assert clone.open_shards == 0 and clone.index.on_disk
    np.testing.assert_array_equal(clone.read_frames(clip.clip_id, [1])[0], frames[clip.clip_id][1])
    # Workers forked after the parent opened the files read correct frames too.
    ds = FramePairDataset(store, "train", id_sampling=False)
    loader = DataLoader(ds, batch_size=None, num_workers=2, worker_init_fn=seed_worker)
    for item in loader:
        i, _ = item["frames"]
        torch.testing.assert_close(item["source"], as_float(frames[item["clip_id"]][i]), rtol=0, atol=0)


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(FommError, match="index.parquet: shard index not found"):
        ShardStore(tmp_path)



def test_empty_partition_is_a_clear_error(shards):
    root, _ = shards
    with pytest.raises(FommError, match="no clips with 2\\+ frames in partition 'dev'"):
        FramePairDataset(root, "dev")


def test_uint8_items_match_float_items_and_collate(shards):
    root, _ = shards
    floats = FramePairDataset(root, "train", id_sampling=False)
    ints = FramePairDataset(root, "train", id_sampling=False, as_float=False,
                            augment=AugmentConfig(horizontal_flip=0.5, time_flip=0.5, jitter=0.0))
    plain = FramePairDataset(root, "train", id_sampling=False,
                             augment=AugmentConfig(horizontal_flip=0.5, time_flip=0.5, jitter=0.0))
    for seed in range(4):
        torch.manual_seed(seed)
        a = plain[seed % len(plain)]
        torch.manual_seed(seed)
        b = ints[seed % len(ints)]
        assert b["source"].dtype == torch.uint8 and b["source"].shape == (3, 64, 64)
        assert b["source"].is_contiguous() and a["frames"] == b["frames"]
        assert torch.equal(to_float(b["source"]), a["source"]) and torch.equal(to_float(b["driving"]), a["driving"])
    batch = next(iter(DataLoader(ints, batch_size=3)))
    assert batch["source"].dtype == torch.uint8 and to_float(batch["source"]).dtype == torch.float32
    assert float(floats[0]["source"].max()) <= 1.0
    with pytest.raises(ValueError, match="colour jitter needs float"):
        FramePairDataset(root, "train", as_float=False, augment=AugmentConfig())
    with pytest.raises(TypeError):
        to_float(a["source"])


def _tiny_shards(root: Path, shards: int, frames: int = 3) -> None:
    """``shards`` real shard files of one 8x8 clip each, and their index (no stage needed)."""
    import cv2
    import pyarrow as pa

    from fomm_core.clip_index import features_path
    from fomm_core.clip_index_build import INDEX_SCHEMA, write_index
    from fomm_core.shard_file import ShardFileWriter

    (root / "shards").mkdir(parents=True)
    rows = []
    for s in range(shards):
        name = f"shards/shard-{s:05d}.frames"
        with open(root / name, "wb") as sink:
            writer = ShardFileWriter(sink)
            for f in range(frames):
                writer.add(cv2.imencode(".jpg", np.full((8, 8, 3), (s * 7 + f) % 256, np.uint8))[1].tobytes())
            writer.finish("test", [])
        clip_id = f"id{s // 10:05d}#vid{s:08d}#000000#{frames:06d}"
        rows.append({"clip_id": clip_id, "person_id": clip_id[:7], "video_id": f"vid{s:08d}", "partition": "train",
                     "shard": name, "row_start": 0, "row_end": frames, "num_frames": frames, "fps": 25.0,
                     "image_format": "jpeg", "height": 8, "width": 8,
                     "features": features_path("train", clip_id), "has_groundtruth": False})
    write_index(root, pa.Table.from_pylist(rows, schema=INDEX_SCHEMA))


_READ_ALL_UNDER_ULIMIT = r"""
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
from fomm_core.data import FramePairDataset
from fomm_core.errors import FommError

def rss_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])

ds = FramePairDataset(sys.argv[1], "train", id_sampling=False, augment=None, max_open_shards=int(sys.argv[2]))
try:
    for k in range(200):
        ds[k]
    after_200 = rss_kb()
    for k in list(range(200, len(ds))) + list(range(len(ds))):  # every shard, twice: all LRU misses
        ds[k]
except FommError as exc:
    sys.exit(f"error: {exc}")
print(json.dumps({"fds": len(os.listdir("/proc/self/fd")), "open": ds.store.open_shards,
                  "opened": ds.store.shards_opened, "rss_growth_kb": rss_kb() - after_200}))
"""


def test_two_thousand_shards_read_under_ulimit_256_with_flat_memory(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from _shard_helpers import REPO

    _tiny_shards(tmp_path / "s", 2000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def read_all(cap: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _READ_ALL_UNDER_ULIMIT, str(tmp_path / "s"), str(cap)],
                              capture_output=True, text=True, env=env)

    capped = read_all(64)
    assert capped.returncode == 0, capped.stderr
    stats = json.loads(capped.stdout)
    assert stats["open"] == 64 and stats["opened"] == 2 * 2000  # two passes in order: every read a miss
    assert stats["fds"] <= 64 + 40  # the cap plus what Python/torch hold anyway
    assert stats["rss_growth_kb"] < 8 * 1024  # 3,800 more shards opened, memory flat
    # The limit is real: without the cap the same reads run out of descriptors, one clear line.
    uncapped = read_all(100_000)
    assert uncapped.returncode != 0 and "Traceback" not in uncapped.stderr
    assert "Too many open files" in uncapped.stderr and "dvc repro shard" in uncapped.stderr


def test_a_shard_deleted_after_indexing_is_one_line_naming_it(shards, tmp_path):
    import shutil

    root, _ = shards
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    ds = FramePairDataset(copy, "train", id_sampling=False)
    clip = ds.clips[0]
    (copy / clip.shard).unlink()
    with pytest.raises(FommError) as caught:
        ds[0]
    message = str(caught.value)
    assert str(copy / clip.shard) in message and "re-run `dvc repro shard`" in message and "\n" not in message
    # In a DataLoader worker torch folds the worker's traceback into the message; the CLI prints its line.
    from pipeline.cli_support import one_line

    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1)
    with pytest.raises(FommError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)
    assert one_line(caught.value) == message


def test_index_columns_match_the_parquet_rows_and_fall_back_without_their_file(shards, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from fomm_core.clip_index import ClipEntry

    root, _ = shards
    store = ShardStore(root)
    rows = pq.read_table(root / "index.parquet").to_pylist()
    assert store.index.on_disk and [vars(e) for e in store.clips] == rows
    assert [vars(e) for e in store.select("test")] == [r for r in rows if r["partition"] == "test"]
    for row, clip in enumerate(rows):
        assert store.index.find(clip["clip_id"]) == row
    assert store.index.find("id99999#nope#000000#000001") is None and store.index.find("") is None
    assert (root / "index.cols").stat().st_size / len(OK) < 2000  # tiny set: the header dominates
    # The pairs FramePairDataset draws: clips with 2+ frames, grouped by person, people sorted.
    groups = store.index.pair_groups("train")
    train = [r for r in rows if r["partition"] == "train" and r["num_frames"] >= 2]
    assert groups.people == sorted({r["person_id"] for r in train})
    for p, person in enumerate(groups.people):
        mine = [i for i, r in enumerate(rows) if r in train and r["person_id"] == person]
        assert list(groups.rows[int(groups.starts[p]):int(groups.starts[p + 1])]) == mine
    assert list(groups.pairable) == [i for i, r in enumerate(rows) if r in train]

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "index.cols").unlink()  # an index written by hand or by an older fomm shard
    legacy = ShardStore(copy)
    assert not legacy.index.on_disk
    assert list(legacy.clips) == list(store.clips) and all(isinstance(c, ClipEntry) for c in legacy.clips)
    assert pickle.loads(pickle.dumps(legacy)).clip(rows[3]["clip_id"]) == store.clip(rows[3]["clip_id"])
    # A stale index.cols (not the one index.parquet was published with) is never used...
    pq.write_table(pq.read_table(root / "index.parquet").slice(0, 2), copy / "index.parquet")
    shutil.copy(root / "index.cols", copy / "index.cols")
    assert len(ShardStore(copy).clips) == 2 and not ShardStore(copy).index.on_disk
    # ...nor a damaged one.
    shutil.copy(root / "index.parquet", copy / "index.parquet")
    for damage in (b"", b"FOMMIDX1" + b"\xff" * 8, (root / "index.cols").read_bytes()[:200]):
        (copy / "index.cols").write_bytes(damage)
        damaged = ShardStore(copy)
        assert not damaged.index.on_disk and list(damaged.clips) == list(store.clips)
    # One that matches index.parquet but lacks a column is one line, not a KeyError.
    renamed = (root / "index.cols").read_bytes().replace(b'"row_start"', b'"row_stars"', 1)
    (copy / "index.cols").write_bytes(renamed)
    with pytest.raises(FommError, match=r"index.cols: column row_start missing; re-run `dvc repro shard`"):
        ShardStore(copy)


def test_a_pickled_index_refuses_a_replaced_file(shards, tmp_path):
    import shutil

    root, _ = shards
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    payload = pickle.dumps(ShardStore(copy).select("train"))
    fresh = copy / "index.cols.new"
    shutil.copy(copy / "index.cols", fresh)
    fresh.replace(copy / "index.cols")  # what a new `fomm shard` publishing under a running job looks like
    with pytest.raises(FommError, match="changed while in use"):
        pickle.loads(payload)


_LOADER_IMPORTS = r"""
import json, sys
from fomm_core.data import FramePairDataset
ds = FramePairDataset(sys.argv[1], "train")
before = {m: m in sys.modules for m in ("pyarrow", "cv2")}
ds[0]
print(json.dumps({"before": before, "after": {m: m in sys.modules for m in ("pyarrow", "cv2")}}))
"""


def test_the_loader_never_imports_pyarrow_and_opencv_only_to_decode(shards):
    """Each training process and worker pays for torch; pyarrow (~40 MB) and cv2 (~16 MB) stay out
    of processes that do not need them (a main process whose workers decode never loads cv2)."""
    import json
    import os
    import subprocess
    import sys

    from _shard_helpers import REPO

    root, _ = shards
    out = subprocess.run([sys.executable, "-c", _LOADER_IMPORTS, str(root)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"before": {"pyarrow": False, "cv2": False},
                                      "after": {"pyarrow": False, "cv2": True}}


def test_persistent_workers_see_each_new_epoch(shards):
    """Workers that live across epochs (persistent_workers) draw each epoch's items, not epoch 0's again."""
    from fomm_core.training.sampling import SeededItems

    root, _ = shards
    items = SeededItems(DatasetRepeater(FramePairDataset(root, "train", id_sampling=False), 4), seed=3)

    def epochs(workers: int) -> list[list]:
        loader = DataLoader(items, batch_size=4, num_workers=workers, persistent_workers=workers > 0)
        out = []
        for epoch in range(3):
            items.set_epoch(epoch)
            out.append([(c, int(i), int(j)) for batch in loader
                        for c, i, j in zip(batch["clip_id"], *batch["frames"])])
        return out

    persistent = epochs(2)
    assert persistent == epochs(0)  # the same items as the main process draws
    assert persistent[0] != persistent[1] != persistent[2]
