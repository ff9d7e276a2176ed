"""Checkpoints round-trip through weights_only loading and reject foreign files."""

import pytest
import torch

from fomm_core.checkpoint import load_inference_models, read_checkpoint, save_checkpoint
from fomm_core.errors import FommError
from fomm_core.model_config import small_model_config
from fomm_core.models import build_models


def test_round_trip_reproduces_outputs(tmp_path):
    torch.manual_seed(0)
    config = small_model_config()
    kp, gen, disc = build_models(config)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model_config=config, models={"kp_detector": kp, "generator": gen, "discriminator": disc},
                    extra={"step": 7})
    assert read_checkpoint(path)["step"] == 7
    kp2, gen2, config2, size2, *_ = load_inference_models(path)
    assert config2 == config and not gen2.training
    assert size2 is None  # no train_config saved: the resolution is unknown, callers keep theirs
    image = torch.rand(1, 3, 64, 64)
    kp.eval(); gen.eval()
    with torch.no_grad():
        source = kp(image)
        expected = gen(image, kp_driving=source, kp_source=source)["prediction"]
        got = gen2(image, kp_driving=kp2(image), kp_source=kp2(image))["prediction"]
    assert torch.allclose(expected, got)


def test_foreign_and_corrupt_files_are_clean_errors(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(FommError, match="not a fomm-checkpoint-v1 checkpoint"):
        read_checkpoint(foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(FommError, match="cannot read checkpoint"):
        read_checkpoint(corrupt)
    with pytest.raises(FommError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")
