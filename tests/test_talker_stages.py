"""The talker stages' CLI contracts: clear one-line errors, and the model folder `fomm talk` reads."""

from __future__ import annotations

import torch
import yaml

from fomm_core.checkpoint import load_inference_models, read_checkpoint
from fomm_core.config import to_mapping
from fomm_core.talker import Syncers, save_syncers_checkpoint

from _inference_helpers import run_cli, save_tiny_checkpoint
from _talker_helpers import tiny_model, tiny_syncer


def one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_inputs_name_the_stage_that_makes_them(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "syncer": to_mapping(tiny_syncer()), "talker_model": to_mapping(tiny_model()), "talker_eval": {}}))
    one_line_error(run_cli(["extract-keypoints", "--checkpoint", "none.pt"], tmp_path, check=False), "none.pt")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "index.parquet").write_bytes(b"")
    one_line_error(run_cli(["train-syncer", "--shards", str(shards), "--keypoints", "nokp"], tmp_path, check=False),
                   "nokp", "fomm extract-keypoints")
    one_line_error(run_cli(["train-talker", "--syncers", "nosync.pt"], tmp_path, check=False),
                   "nosync.pt", "fomm train-syncer")
    one_line_error(run_cli(["evaluate-talker", "--talker", "notalker.pt"], tmp_path, check=False),
                   "notalker.pt", "fomm train-talker")


def test_talker_and_syncer_settings_must_agree(tmp_path):
    syncers = tmp_path / "syncers.pt"
    save_syncers_checkpoint(syncers, Syncers(tiny_syncer(num_kp=10)))
    save_tiny_checkpoint(tmp_path / "fomm.pt")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "talker_model": to_mapping(tiny_model(num_kp=5)), "talker_train": {}}))
    result = run_cli(["train-talker", "--syncers", str(syncers), "--checkpoint", "fomm.pt"], tmp_path, check=False)
    one_line_error(result, "talker_model does not match the syncers", "num_kp")


def test_exported_fomm_weights_are_inference_only_and_keep_the_frame_size(tmp_path):
    from pipeline.stages.train_talker import export_fomm_for_inference

    source = save_tiny_checkpoint(tmp_path / "train.pt", frame_size=40)
    state = torch.load(source, weights_only=True)
    state["optimizers"] = {"generator": {"state": {}, "param_groups": []}}
    torch.save(state, source)
    export_fomm_for_inference(source, tmp_path / "fomm.pt")
    exported = read_checkpoint(tmp_path / "fomm.pt")
    assert set(exported) == {"format", "model_config", "kp_detector", "generator", "train_config", "loss_config"}
    kp, gen, config, frame_size, *_ = load_inference_models(tmp_path / "fomm.pt")
    assert frame_size == 40
    original = load_inference_models(source)
    for a, b in ((kp, original.kp_detector), (gen, original.generator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
