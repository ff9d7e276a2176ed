"""train.init_from: fine-tuning starts from an imported (or trained) checkpoint's weights, optimizer fresh."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from _official_helpers import tiny_model_params, write_official
from _train_helpers import FRAME, build_shards, tiny_losses, tiny_train
from fomm_core.checkpoint import checkpoint_model_config, read_checkpoint
from fomm_core.config import ConfigError, from_mapping
from fomm_core.errors import FommError
from fomm_core.official import import_checkpoint
from fomm_core.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return build_shards(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A tiny published-layout vox-adv checkpoint, imported."""
    folder = tmp_path_factory.mktemp("official")
    source, config = write_official(folder, tiny_model_params("vox-adv-256"), frame_size=FRAME, seed=5)
    return import_checkpoint(source, config, folder / "imported.pt").out


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_starts_from_the_imported_weights_with_fresh_optimizers(shards, imported, tmp_path):
    state = read_checkpoint(imported)
    config = checkpoint_model_config(state)
    lines = []
    trainer = Trainer(shards, tmp_path / "run", config, tiny_losses(gan=1.0),
                      tiny_train(max_steps=1, init_from=str(imported)), log=lambda line, **_: lines.append(line))
    try:
        for name in ("kp_detector", "generator", "discriminator"):
            assert _equal(_weights(trainer.models()[name]), state[name]), name
        assert all(not opt.state_dict()["state"] for opt in trainer.optimizers.values())
        assert any("fine-tuning: weights of kp_detector, generator, discriminator" in line
                   and "(imported from model-cpk.pth.tar)" in line for line in lines)
        trainer.run()
    finally:
        trainer.close()
    tuned = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint_model_config(tuned) == config and tuned["step"] == 1
    assert not _equal(tuned["generator"], state["generator"])  # one step of fine-tuning happened


def test_a_resumed_run_keeps_its_own_weights(shards, imported, tmp_path):
    config = checkpoint_model_config(read_checkpoint(imported))
    first = Trainer(shards, tmp_path, config, tiny_losses(), tiny_train(max_steps=2, init_from=str(imported)),
                    log=lambda *a, **k: None)
    try:
        first.run()
    finally:
        first.close()
    saved = read_checkpoint(tmp_path / "checkpoint.pt")
    resumed = Trainer(shards, tmp_path, config, tiny_losses(), tiny_train(max_steps=3, init_from=str(imported)),
                      resume=True, log=lambda *a, **k: None)
    try:
        assert resumed.step == 2 and _equal(_weights(resumed.generator), saved["generator"])
    finally:
        resumed.close()


def test_another_model_or_discriminator(shards, imported, tmp_path):
    config = checkpoint_model_config(read_checkpoint(imported))
    other = dataclasses.replace(config, downsample="bilinear")
    with pytest.raises(FommError, match=r"its model differs from params.yaml at model.downsample "
                                        r"\('strided' there, 'bilinear' here\)"):
        Trainer(shards, tmp_path, other, tiny_losses(), tiny_train(init_from=str(imported)), log=lambda *a, **k: None)
    # Another discriminator (vox-256's, say, for adversarial fine-tuning): it starts fresh, the rest is loaded.
    lines = []
    adversarial = dataclasses.replace(config, discriminator=dataclasses.replace(config.discriminator, sn=True))
    trainer = Trainer(shards, tmp_path, adversarial, tiny_losses(gan=1.0), tiny_train(init_from=str(imported)),
                      log=lambda line, **_: lines.append(line))
    trainer.close()
    assert any("discriminator freshly initialised" in line for line in lines)
    with pytest.raises(FommError, match="checkpoint not found"):
        Trainer(shards, tmp_path, config, tiny_losses(), tiny_train(init_from=str(tmp_path / "none.pt")),
                log=lambda *a, **k: None)


def test_a_frozen_detector_is_a_valid_setting():
    assert from_mapping(TrainConfig, {"lr_kp_detector": 0}, "train").lr_kp_detector == 0  # taichi-adv-256
    with pytest.raises(ConfigError, match="lr_kp_detector must be >= 0"):
        from_mapping(TrainConfig, {"lr_kp_detector": -1e-4}, "train")
