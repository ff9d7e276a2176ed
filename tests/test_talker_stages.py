"""The talker stages' CLI contracts: clear one-line errors, and the model folder `fomm talk` reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from fomm_core.checkpoint import (load_inference_models, read_checkpoint, read_weights_sha256, save_checkpoint,
                                  write_inference_copy)
from fomm_core.config import to_mapping
from fomm_core.models import build_models
from fomm_core.talker import (Syncers, Talker, keypoints_path, save_clip_keypoints, save_syncers_checkpoint,
                              save_talker_checkpoint)

from _inference_helpers import one_line_error, run_cli, run_in_process, save_tiny_checkpoint, tiny_model_config
from _talker_helpers import fake_shard_store, tiny_model, tiny_syncer, tiny_train


def test_missing_inputs_name_the_stage_that_makes_them(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "syncer": to_mapping(tiny_syncer()), "talker_model": to_mapping(tiny_model()), "talker_eval": {}}))
    one_line_error(run_cli(["extract-keypoints", "--checkpoint", "none.pt"], tmp_path, check=False), "none.pt")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "index.parquet").write_bytes(b"")
    one_line_error(run_in_process(["train-syncer", "--shards", str(shards), "--keypoints", "nokp"], tmp_path),
                   "artifacts/train/checkpoint.pt: FOMM checkpoint not found", "talker_fomm.checkpoint")
    save_tiny_checkpoint(tmp_path / "fomm.pt")
    one_line_error(run_cli(["train-syncer", "--shards", str(shards), "--keypoints", "nokp", "--checkpoint", "fomm.pt"],
                           tmp_path, check=False), "nokp", "fomm extract-keypoints")
    one_line_error(run_cli(["train-talker", "--syncers", "nosync.pt"], tmp_path, check=False),
                   "nosync.pt", "fomm train-syncer")
    one_line_error(run_cli(["evaluate-talker", "--talker", "notalker.pt"], tmp_path, check=False),
                   "notalker.pt", "fomm train-talker")


def test_talker_and_syncer_settings_must_agree(tmp_path):
    syncers = tmp_path / "syncers.pt"
    save_syncers_checkpoint(syncers, Syncers(tiny_syncer(num_kp=10)))
    save_tiny_checkpoint(tmp_path / "fomm.pt")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "talker_model": to_mapping(tiny_model(num_kp=10, n_mels=20)), "talker_train": {}}))
    result = run_in_process(["train-talker", "--syncers", str(syncers), "--checkpoint", "fomm.pt"], tmp_path)
    one_line_error(result, "talker_model does not match the syncers", "n_mels")


def test_exported_fomm_weights_are_inference_only_and_keep_the_frame_size(tmp_path):
    source = save_tiny_checkpoint(tmp_path / "train.pt", frame_size=40)
    state = torch.load(source, weights_only=True)
    state["optimizers"] = {"generator": {"state": {}, "param_groups": []}}
    torch.save(state, source)
    write_inference_copy(source, tmp_path / "fomm.pt")
    assert read_weights_sha256(tmp_path / "fomm.pt") == read_weights_sha256(source)  # same FOMM, same identity
    exported = read_checkpoint(tmp_path / "fomm.pt")
    assert set(exported) == {"format", "model_config", "kp_detector", "generator", "train_config", "loss_config"}
    kp, gen, config, frame_size, *_ = load_inference_models(tmp_path / "fomm.pt")
    assert frame_size == 40
    original = load_inference_models(source)
    for a, b in ((kp, original.kp_detector), (gen, original.generator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- which FOMM the files come from

CLIPS = [("id00001#vidAAAAAAAA#000000#000060", "train"), ("id00002#vidBBBBBBBB#000000#000060", "train"),
         ("id00003#vidCCCCCCCC#000000#000060", "test")]


@pytest.fixture()
def talker_project(tmp_path):
    """params.yaml, a tiny FOMM (talker_fomm.checkpoint), index-only shards and its keypoints."""
    fomm = save_tiny_checkpoint(tmp_path / "fomm.pt", frame_size=48)
    sha = read_weights_sha256(fomm)
    rng = np.random.default_rng(0)
    fake_shard_store(tmp_path / "shards", [(clip, part, 60, rng.normal(size=(240, 26)).astype(np.float32))
                                           for clip, part in CLIPS])
    for clip, part in CLIPS:
        save_clip_keypoints(keypoints_path(tmp_path / "kp", part, clip), rng.uniform(-1, 1, (60, 10, 2)),
                            np.tile(np.eye(2), (60, 10, 1, 1)), 25.0, sha)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "talker_fomm": {"checkpoint": "fomm.pt"}, "syncer": to_mapping(tiny_syncer()),
        "talker_model": to_mapping(tiny_model()), "talker_train": to_mapping(tiny_train()), "talker_eval": {}}))
    return tmp_path, sha


def other_fomm(path, num_kp: int = 10):
    """Another FOMM run: same shapes (or another keypoint count), other weights."""
    config = tiny_model_config()
    config.num_kp = num_kp
    torch.manual_seed(7)
    kp, gen, _ = build_models(config)
    save_checkpoint(path, model_config=config, models={"kp_detector": kp, "generator": gen},
                    extra={"train_config": {"frame_size": 48}})
    return path


def save_syncers(path, sha: str):
    syncers = Syncers(tiny_syncer())
    syncers.fomm_sha256 = sha
    save_syncers_checkpoint(path, syncers)
    return path


def test_train_talker_refuses_a_fomm_of_another_keypoint_count_before_writing(talker_project):
    root, sha = talker_project
    save_syncers(root / "syncers.pt", sha)
    other_fomm(root / "fomm15.pt", num_kp=15)
    result = run_in_process(["train-talker", "--shards", "shards", "--keypoints", "kp", "--syncers", "syncers.pt",
                      "--checkpoint", "fomm15.pt", "--out", "talker", "--no-mlflow"], root)
    one_line_error(result, "fomm15.pt detects 15 keypoints but talker_model.num_kp", "is 10")
    assert not (root / "talker").exists()


def test_talker_stages_refuse_files_of_another_fomm_run(talker_project):
    root, sha = talker_project
    other = read_weights_sha256(other_fomm(root / "other.pt"))
    common = ["--shards", "shards", "--keypoints", "kp", "--no-mlflow"]

    # train-syncer: keypoints of the params' FOMM only.
    result = run_in_process(["train-syncer", *common, "--checkpoint", "other.pt", "--out", "syncer"], root)
    one_line_error(result, f"FOMM weights differ: the keypoints in kp has {sha[:12]}",
                   f"the FOMM checkpoint other.pt has {other[:12]}", "rerun `fomm extract-keypoints`")
    assert not (root / "syncer").exists()

    # train-talker: syncers trained on another FOMM's keypoints, or before hashes were recorded.
    save_syncers(root / "other_syncers.pt", other)
    result = run_in_process(["train-talker", *common, "--syncers", "other_syncers.pt", "--out", "talker"], root)
    one_line_error(result, f"the syncers other_syncers.pt has {other[:12]}", "rerun `fomm train-syncer`")
    save_syncers(root / "old_syncers.pt", "")
    result = run_in_process(["train-talker", *common, "--syncers", "old_syncers.pt", "--out", "talker"], root)
    one_line_error(result, "old_syncers.pt records no FOMM checkpoint", "rerun `fomm train-syncer`")
    assert not (root / "talker").exists()

    # evaluate-talker: a talker of another FOMM with this pipeline's syncers and keypoints.
    save_syncers(root / "syncers.pt", sha)
    talker = Talker(tiny_model())
    talker.fomm_sha256 = other
    save_talker_checkpoint(root / "talker.pt", talker)
    result = run_in_process(["evaluate-talker", *common, "--talker", "talker.pt", "--syncers", "syncers.pt",
                             "--fomm", "fomm.pt", "--out", "eval"], root)
    one_line_error(result, f"the talker talker.pt has {other[:12]}", "rerun `fomm train-talker`")
    # ...or the right talker with another FOMM's renderer.
    talker.fomm_sha256 = sha
    save_talker_checkpoint(root / "talker.pt", talker)
    result = run_in_process(["evaluate-talker", *common, "--talker", "talker.pt", "--syncers", "syncers.pt",
                             "--fomm", "other.pt", "--out", "eval"], root)
    one_line_error(result, f"the renderer other.pt has {other[:12]}", "rerun `fomm train-talker`")
    assert not (root / "eval").exists()
