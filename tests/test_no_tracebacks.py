"""Bad input never gives a traceback and never changes a file: a table of (command, bad input).

Each case builds its files in a fresh folder, runs the real CLI in-process, and asserts exit
code 2, exactly one line on stderr naming what is wrong, no traceback, and that every file
that existed before is byte-identical afterwards (nothing deleted, nothing replaced).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _precious(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "PRECIOUS.txt").write_text("not written by fomm\n")
    return folder


def _fake_shards(root: Path) -> Path:
    shards = root / "shards"
    (shards / "shards").mkdir(parents=True)
    (shards / "index.parquet").write_bytes(b"index")
    (shards / "shards" / "shard-00000.parquet").write_bytes(b"x" * 1000)
    return shards


def _params(root: Path, text: str | None = None) -> Path:
    path = root / "params.yaml"
    path.write_text(PARAMS.read_text() if text is None else text)
    return path


@dataclass
class Case:
    name: str
    build: Callable[[Path], list[str]]  # makes the files, returns the argv
    expect: str  # a fragment of the one stderr line


def _syncers(root: Path) -> Path:
    from fomm_core.talker import SyncerConfig, Syncers, save_syncers_checkpoint

    path = root / "syncer" / "syncers.pt"
    save_syncers_checkpoint(path, Syncers(SyncerConfig()))  # matches the project's talker_model
    return path


def _damaged_store(root: Path) -> Path:
    store = root / "store"
    store.mkdir()
    (store / "mlflow.db").write_bytes(b"not a database " * 100)
    return store


def _real_ckpt(root: Path) -> Path:
    from _inference_helpers import save_tiny_checkpoint

    return save_tiny_checkpoint(root / "train" / "fomm.pt")  # 10 keypoints, as the project's talker_model


def _ckpt(root: Path) -> Path:
    path = root / "train" / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"checkpoint")
    return path


CASES = [
    # --out replacing an input or a folder the command did not write (issue 9, case 1)
    Case("evaluate --out SHARDS", lambda r: ["evaluate", "--checkpoint", str(_ckpt(r)), "--shards", str(_fake_shards(r)),
                                            "--out", str(r / "shards"), "--params", str(_params(r)), "--no-mlflow"],
         "is the input"),
    Case("evaluate --out PRECIOUS", lambda r: ["evaluate", "--checkpoint", str(_ckpt(r)), "--shards", str(_fake_shards(r)),
                                              "--out", str(_precious(r / "eval")), "--params", str(_params(r)), "--no-mlflow"],
         "PRECIOUS.txt"),
    # the project folder itself, default (relative) inputs; ran the whole evaluation before
    Case("evaluate-talker --out .", lambda r: ["evaluate-talker", "--out", ".", "--params", str(_params(r)), "--no-mlflow"],
         "--out . contains the input artifacts/talker/talker.pt"),
    Case("evaluate-talker --out KEYPOINTS", lambda r: ["evaluate-talker", "--out", str(_precious(r / "kp")),
                                                      "--params", str(_params(r)), "--no-mlflow", "--keypoints", str(r / "kp")],
         "is the input"),
    Case("evaluate-talker --out PRECIOUS", lambda r: ["evaluate-talker", "--out", str(_precious(r / "talker_eval")),
                                                     "--params", str(_params(r)), "--no-mlflow"],
         "PRECIOUS.txt"),
    Case("evaluate --out /proc", lambda r: ["evaluate", "--checkpoint", str(_ckpt(r)), "--shards", str(_fake_shards(r)),
                                           "--out", "/proc/fomm-eval", "--params", str(_params(r)), "--no-mlflow"],
         "cannot write in /proc"),
    Case("talk --out-dir a file", lambda r: ["talk", "--audio-dir", str(_precious(r / "audio")), "--img-dir",
                                            str(_precious(r / "img")), "--out-dir",
                                            str(_precious(r / "talk") / "PRECIOUS.txt")],
         "is a file, not a folder"),
    Case("demo --out PRECIOUS", lambda r: ["demo", "--checkpoint", str(_ckpt(r)), "--shards", str(_fake_shards(r)),
                                          "--clips", str(r / "clips"), "--out", str(_precious(r / "demo")),
                                          "--params", str(_params(r))],
         "PRECIOUS.txt"),
    Case("demo --out CLIPS", lambda r: ["demo", "--checkpoint", str(_ckpt(r)), "--shards", str(_fake_shards(r)),
                                       "--clips", str(_precious(r / "clips")), "--out", str(r / "clips"),
                                       "--params", str(_params(r))],
         "is the input"),
    Case("extract-keypoints --out PRECIOUS", lambda r: ["extract-keypoints", "--checkpoint", str(_ckpt(r)),
                                                       "--shards", str(_fake_shards(r)), "--out", str(_precious(r / "kp"))],
         "PRECIOUS.txt"),
    Case("extract-keypoints --out inside SHARDS", lambda r: ["extract-keypoints", "--checkpoint", str(_ckpt(r)),
                                                            "--shards", str(_fake_shards(r)), "--out", str(r / "shards" / "kp")],
         "lies inside the input"),
    Case("synth --out PRECIOUS", lambda r: ["synth", "--out", str(_precious(r / "synth")), "--params", str(_params(r))],
         "PRECIOUS.txt"),
    Case("synth --out a file", lambda r: ["synth", "--out", str(_precious(r / "synth") / "PRECIOUS.txt"),
                                         "--params", str(_params(r))],
         "is a file"),
    Case("synth --out /proc", lambda r: ["synth", "--out", "/proc/fomm-synth", "--params", str(_params(r))],
         "cannot write"),
    # Training: every check before any work (issue 9, cases 13, 14, 16)
    Case("train --out /proc", lambda r: ["train", "--params", str(_params(r)), "--shards", str(_fake_shards(r)),
                                        "--out", "/proc/fomm-train", "--no-mlflow"],
         "cannot write in /proc"),
    Case("train --out under a file", lambda r: ["train", "--params", str(_params(r)), "--shards", str(_fake_shards(r)),
                                               "--out", str(_precious(r / "train") / "PRECIOUS.txt" / "out"),
                                               "--no-mlflow"],
         "PRECIOUS.txt is a file, not a folder"),
    Case("train frame_size 7", lambda r: ["train", "--params", str(_params(r, PARAMS.read_text().replace(
                                              "frame_size: 128", "frame_size: 7"))),
                                          "--shards", str(_fake_shards(r)), "--out", str(r / "train_out"), "--no-mlflow"],
         "train.frame_size 7 is too small"),
    Case("train with a damaged mlflow.db", lambda r: ["train", "--params", str(_params(r)), "--shards",
                                                      str(_fake_shards(r)), "--out", str(r / "train_out"),
                                                      "--mlflow-dir", str(_damaged_store(r))],
         "the MLflow store is damaged"),
    Case("train-syncer --out /proc", lambda r: ["train-syncer", "--params", str(_params(r)), "--shards",
                                               str(_fake_shards(r)), "--keypoints", str(_precious(r / "kp")),
                                               "--checkpoint", str(_ckpt(r)), "--out", "/proc/fomm-syncer",
                                               "--no-mlflow"],
         "cannot write in /proc"),
    Case("train-talker --out a file", lambda r: ["train-talker", "--params", str(_params(r)), "--shards",
                                                str(_fake_shards(r)), "--keypoints", str(_precious(r / "kp")),
                                                "--syncers", str(_syncers(r)), "--checkpoint", str(_real_ckpt(r)),
                                                "--out", str(_precious(r / "talker") / "PRECIOUS.txt"), "--no-mlflow"],
         "is a file, not a folder"),
    Case("tubes --out PRECIOUS", lambda r: ["tubes", str(_precious(r / "meta") / "PRECIOUS.txt"),
                                           "--videos", str(_precious(r / "videos")), "--input", str(r / "meta"),
                                           "--out", str(_precious(r / "tubes")), "--params", str(_params(r))],
         "PRECIOUS.txt"),
    Case("tubes --out VIDEOS", lambda r: ["tubes", str(_precious(r / "meta") / "PRECIOUS.txt"),
                                         "--videos", str(_precious(r / "videos")), "--input", str(r / "meta"),
                                         "--out", str(r / "videos"), "--params", str(_params(r))],
         "is the input"),
    Case("find-crops --out a foreign file", lambda r: ["find-crops", str(_precious(r / "v") / "PRECIOUS.txt"),
                                                      "--out", str(_precious(r / "o") / "PRECIOUS.txt"),
                                                      "--params", str(_params(r))],
         "was not written by `fomm find-crops`"),
    # params.yaml sections (issue 9, case 7)
    Case("train with modle:", lambda r: ["train", "--params", str(_params(r, PARAMS.read_text().replace("\nmodel:\n", "\nmodle:\n"))),
                                        "--shards", str(_fake_shards(r)), "--out", str(r / "train_out"), "--no-mlflow"],
         "did you mean 'model'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, monkeypatch, case):
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    argv = case.build(root)
    before = _snapshot(root)
    result = CliRunner().invoke(app, argv)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and case.expect in lines[0], lines[0]
    assert _snapshot(root) == before
