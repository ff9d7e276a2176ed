"""`fomm profile`: the paper's vox-256 / vox-adv-256 settings applied to params.yaml in place."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fomm_core.config import to_mapping
from fomm_core.errors import FommError
from fomm_core.losses import LossConfig
from fomm_core.model_config import ModelConfig
from fomm_core.training import TrainConfig
from pipeline import profiles
from pipeline.params import load_section

REPO = Path(__file__).resolve().parents[1]


def profile_sections(name: str) -> dict:
    return yaml.safe_load(profiles.profile_path(name).read_text())


@pytest.mark.parametrize("name,gan", [("vox-256", 0.0), ("vox-adv-256", 1.0)])
def test_profiles_hold_the_papers_settings(name, gan):
    data = profile_sections(name)
    model, losses, train = data["model"], data["losses"], data["train"]
    assert model["num_kp"] == 10 and model["estimate_jacobian"] is True
    assert model["kp"] == {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "temperature": 0.1,
                           "scale_factor": 0.25, "pad": 0}
    gen = model["generator"]
    assert (gen["block_expansion"], gen["max_features"], gen["num_down_blocks"], gen["num_bottleneck_blocks"],
            gen["estimate_occlusion_map"]) == (64, 512, 2, 6, True)
    dm = gen["dense_motion"]
    assert (dm["block_expansion"], dm["max_features"], dm["num_blocks"], dm["scale_factor"]) == (64, 1024, 5, 0.25)
    disc = model["discriminator"]
    assert (disc["scales"], disc["block_expansion"], disc["max_features"], disc["num_blocks"], disc["sn"]) == (
        [1.0], 32, 512, 4, True)
    assert (train["lr_generator"], train["lr_discriminator"], train["lr_kp_detector"]) == (2e-4, 2e-4, 2e-4)
    assert train["betas"] == [0.5, 0.999]
    assert (train["epochs"], train["scheduler_milestones"], train["scheduler_gamma"]) == (100, [60, 90], 0.1)
    assert (train["num_repeats"], train["batch_size"], train["frame_size"]) == (75, 40, 256)
    assert losses["perceptual"] == [10.0] * 5 and losses["feature_matching"] == [10.0] * 4
    assert (losses["equivariance_value"], losses["equivariance_jacobian"]) == (10.0, 10.0)
    assert losses["generator_gan"] == gan and losses["discriminator_gan"] == 1.0
    assert (losses["sigma_affine"], losses["sigma_tps"], losses["points_tps"]) == (0.05, 0.005, 5)
    assert losses["scales"] == [1.0, 0.5, 0.25, 0.125] and losses["perceptual_backbone"] == "pretrained"
    # ...and they are what the library's dataclass defaults describe.
    assert model == to_mapping(ModelConfig())
    assert {**losses, "generator_gan": 0.0} == to_mapping(LossConfig())
    assert {**train, "betas": tuple(train["betas"])} == to_mapping(TrainConfig())


def test_apply_swaps_only_the_fomm_sections(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_text()
    profiles.apply_profile("vox-adv-256", params)
    after = params.read_text()
    assert load_section(params, "model", ModelConfig) == ModelConfig()
    assert load_section(params, "losses", LossConfig) == LossConfig(generator_gan=1.0)
    assert load_section(params, "train", TrainConfig) == TrainConfig()
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    assert new.keys() == old.keys()  # same sections, same order
    assert {k: v for k, v in new.items() if k not in profiles.SECTIONS} == {
        k: v for k, v in old.items() if k not in profiles.SECTIONS}
    # The other sections' text, comments included, is untouched.
    untouched = before.split("\nmodel:")[0]
    assert after.startswith(untouched) and "\nevaluate:" in after
    assert after.split("\nevaluate:")[1] == before.split("\nevaluate:")[1]
    profiles.apply_profile("vox-adv-256", params)
    assert params.read_text() == after  # idempotent
    profiles.apply_profile("vox-256", params)
    assert load_section(params, "losses", LossConfig).generator_gan == 0.0


def test_missing_sections_are_appended(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("# mine\nsynth:\n  seed: 3\n")
    profiles.apply_profile("vox-256", params)
    data = yaml.safe_load(params.read_text())
    assert data["synth"] == {"seed": 3} and params.read_text().startswith("# mine\nsynth:\n  seed: 3\n")
    assert list(data) == ["synth", "model", "losses", "train"]


def test_cli_lists_applies_and_rejects(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)

    def fomm(*args):
        return subprocess.run([sys.executable, "-m", "pipeline", "profile", *args], capture_output=True,
                              text=True, cwd=REPO)

    listed = fomm()
    assert listed.returncode == 0 and "vox-256" in listed.stdout and "vox-adv-256" in listed.stdout
    applied = fomm("vox-256", "--params", str(params))
    assert applied.returncode == 0 and "set to profile vox-256" in applied.stdout
    assert yaml.safe_load(params.read_text())["train"]["batch_size"] == 40
    bad = fomm("vox-512", "--params", str(params))
    assert bad.returncode == 2 and "unknown profile 'vox-512'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    missing = fomm("vox-256", "--params", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: params file not found" in missing.stderr
    with pytest.raises(FommError, match="unknown profile"):
        profiles.profile_path("../params")
