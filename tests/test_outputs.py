"""Output safety (fomm_core.outputs, fomm_core.atomic) and dying with the parent (pipeline.lifecycle)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fomm_core.atomic import HOST_TAG, atomic_dir, atomic_path, remove_stale_temporaries, temp_prefix
from fomm_core.errors import FommError
from fomm_core.outputs import (
    MARKER, check_not_input, check_output_file, claim_output_dir, folder_owner, replace_output_dir,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_replace_output_dir_marks_and_replaces_only_its_own_output(tmp_path):
    out = tmp_path / "eval"
    with replace_output_dir(out, "evaluate") as tmp:
        (tmp / "metrics.json").write_text("{}")
    assert folder_owner(out) == "evaluate"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "metrics.json"]
    with replace_output_dir(out, "evaluate") as tmp:  # its own output: replaced
        (tmp / "metrics.json").write_text('{"l1": 1}')
    assert json.loads((out / "metrics.json").read_text()) == {"l1": 1}
    with pytest.raises(FommError, match="holds the output of `fomm evaluate`"):
        with replace_output_dir(out, "synth"):
            pass
    assert (out / "metrics.json").exists()


def test_a_folder_with_foreign_files_is_never_replaced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "PRECIOUS.txt").write_text("keep me")
    with pytest.raises(FommError, match="PRECIOUS.txt"):
        with replace_output_dir(out, "evaluate"):
            raise AssertionError("must not get here")
    with pytest.raises(FommError, match="PRECIOUS.txt"):
        claim_output_dir(out, "crop")
    assert (out / "PRECIOUS.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["PRECIOUS.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_legacy_manifest_counts_as_own_output(tmp_path):
    out = tmp_path / "clips"
    out.mkdir()
    (out / "manifest.parquet").write_bytes(b"x")
    assert claim_output_dir(out, "crop", legacy=["manifest.parquet"]) == out.resolve()
    assert folder_owner(out) == "crop"


def test_out_may_not_be_contain_or_lie_inside_an_input(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "index.parquet").write_bytes(b"x")
    ckpt = tmp_path / "train" / "checkpoint.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"x")
    for out, word in ((shards, "is the input"), (tmp_path, "contains the input"),
                      (shards / "eval", "lies inside"), (ckpt.parent, "contains the input")):
        with pytest.raises(FommError, match=word):
            with replace_output_dir(out, "evaluate", inputs=(ckpt, shards)):
                pass
    with pytest.raises(FommError, match="is the input"):
        check_output_file(ckpt, "export-checkpoint", inputs=(ckpt,))
    # a symlink to an input is the input
    (tmp_path / "alias").symlink_to(shards)
    with pytest.raises(FommError, match="is the input"):
        check_not_input(tmp_path / "alias", [shards])
    assert (shards / "index.parquet").read_bytes() == b"x" and ckpt.read_bytes() == b"x"


@pytest.mark.parametrize("where", ["/proc/fomm-out", "file-as-folder"])
def test_unwritable_locations_fail_before_any_work(tmp_path, where):
    if where == "file-as-folder":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "out"
    else:
        out = Path(where)
    with pytest.raises(FommError, match="--out") as err:
        with replace_output_dir(out, "evaluate"):
            raise AssertionError("no work may start")
    assert "\n" not in str(err.value)
    with pytest.raises(FommError):
        check_output_file(out / "x.mp4", "animate")


def test_existing_files_are_replaced_only_when_recognised(tmp_path):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"user's video")
    with pytest.raises(FommError, match="not written by `fomm animate`"):
        check_output_file(target, "animate")
    with pytest.raises(FommError):
        check_output_file(target, "animate", is_ours=lambda p: False)
    assert check_output_file(target, "animate", is_ours=lambda p: True) == target.resolve()
    assert target.read_bytes() == b"user's video"


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = _dead_pid()
    stale_file = tmp_path / f".clip.tmp-{HOST_TAG}-{dead}-abc.tmp.mp4"
    stale_dir = tmp_path / f".shards.tmp-{HOST_TAG}-{dead}-xyz.tmp"
    live = tmp_path / f"{temp_prefix('other')}abc.tmp"
    other_host = tmp_path / f".clip.tmp-{'0' * 8 if HOST_TAG != '0' * 8 else '1' * 8}-{dead}-abc.tmp"
    user_file = tmp_path / ".clip.tmp.mp4"  # looks temporary to a human, not to us
    for path in (stale_file, live, other_host, user_file):
        path.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "shard-00000.parquet").write_bytes(b"x" * 1000)
    nested = tmp_path / "train"
    nested.mkdir()
    nested_stale = nested / f".a.tmp-{HOST_TAG}-{dead}-q.tmp"
    nested_stale.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 2
    assert not stale_file.exists() and not stale_dir.exists()
    assert live.exists() and other_host.exists() and user_file.exists() and nested_stale.exists()
    assert remove_stale_temporaries(tmp_path, recursive=True) == 1
    assert not nested_stale.exists()


def test_a_killed_writer_leaves_a_temporary_the_next_run_removes(tmp_path):
    """Real SIGKILL in the middle of atomic_path / atomic_dir, then a re-run cleans up."""
    script = (
        "import sys, time\n"
        "from fomm_core.atomic import atomic_dir, atomic_path\n"
        "from pathlib import Path\n"
        "root = Path(sys.argv[1])\n"
        "with atomic_path(root / 'clip.mp4') as f, atomic_dir(root / 'shards') as d:\n"
        "    f.write_bytes(b'half'); (d / 'part').write_bytes(b'half')\n"
        "    print('ready', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert len(leftovers) == 2 and all(name.startswith((".clip.tmp-", ".shards.tmp-")) for name in leftovers)
    with replace_output_dir(tmp_path / "shards", "shard") as tmp:
        (tmp / "index.parquet").write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_atomic_dir_swap_interrupted_between_renames_is_recoverable(tmp_path):
    target = tmp_path / "eval"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("2")
    assert (target / "a").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_atomic_path_name_carries_host_and_pid(tmp_path):
    with atomic_path(tmp_path / "x.mp4") as tmp:
        assert tmp.name.startswith(f".x.tmp-{HOST_TAG}-{os.getpid()}-") and tmp.suffix == ".mp4"


# ------------------------------------------------------------------ dying with the parent
_CHILD = (
    "import sys, time\n"
    "from pipeline.lifecycle import watch_parent\n"
    "watching = watch_parent(0.1) is not None\n"
    "open(sys.argv[1], 'w').write('watching' if watching else 'not watching')\n"
    "time.sleep(30)\n"
)
_PARENT = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def _wait_gone(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _start_chain(tmp_path, through_shell: bool, prefix: list[str] | None = None):
    flag = tmp_path / "flag"
    child = [sys.executable, "-c", _CHILD, str(flag)]
    if through_shell:  # what `dvc repro` does with SHELL=/bin/sh: dash keeps the shell in between
        child = ["/bin/sh", "-c", shlex.join(child) + "; true"]
    parent = subprocess.Popen([*(prefix or []), sys.executable, "-c", _PARENT, *child], stdout=subprocess.PIPE, text=True)
    first_child = int(parent.stdout.readline())
    end = time.monotonic() + 10
    while not flag.exists() and time.monotonic() < end:
        time.sleep(0.05)
    return parent, first_child, flag.read_text()


def _python_descendant(root: int) -> int:
    out = subprocess.run(["ps", "-o", "pid=,ppid=,comm=", "-e"], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    kids = {int(pid): int(ppid) for pid, ppid, _ in rows}
    for pid, ppid, comm in rows:
        p = int(pid)
        while p in kids and p != root:
            p = kids[p]
        if p == root and comm.startswith("python") and int(pid) != root:
            return int(pid)
    raise AssertionError("no python descendant")


@pytest.mark.parametrize("through_shell", [False, True])
def test_a_stage_dies_when_its_parent_is_killed(tmp_path, through_shell):
    parent, first_child, state = _start_chain(tmp_path, through_shell)
    assert state == "watching"
    stage = _python_descendant(parent.pid) if through_shell else first_child
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _wait_gone(stage, 5), "the orphaned stage kept running"


def test_nohup_runs_are_left_alone(tmp_path):
    parent, child, state = _start_chain(tmp_path, False, prefix=["nohup"])
    try:
        assert state == "not watching"
    finally:
        parent.kill()
        os.kill(child, signal.SIGKILL)
