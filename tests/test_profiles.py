"""`fomm profile`: the paper's vox-256 / vox-adv-256 settings applied to params.yaml in place."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from _official_helpers import OFFICIAL_CONFIGS
from fomm_core.config import from_mapping, to_mapping
from fomm_core.errors import FommError
from fomm_core.losses import LossConfig
from fomm_core.model_config import ModelConfig
from fomm_core.official import model_config_from_official, train_sections_from_official
from fomm_core.training import TrainConfig
from pipeline import profiles
from pipeline.params import load_section

REPO = Path(__file__).resolve().parents[1]


def profile_sections(name: str) -> dict:
    return yaml.safe_load(profiles.profile_path(name).read_text())


def test_the_published_configs_are_the_profiles():
    assert profiles.available() == sorted(OFFICIAL_CONFIGS)


@pytest.mark.parametrize("name", sorted(OFFICIAL_CONFIGS))
def test_profiles_equal_the_published_configs_number_for_number(name):
    data, official = profile_sections(name), OFFICIAL_CONFIGS[name]
    train_params, weights = official["train_params"], official["train_params"]["loss_weights"]
    model, train, losses = data["model"], data["train"], data["losses"]
    # The numbers themselves, read straight from the original file's layout...
    disc = official["model_params"]["discriminator_params"]
    assert (model["discriminator"]["sn"], model["discriminator"]["use_kp"]) == (disc.get("sn", False),
                                                                                disc.get("use_kp", False))
    assert (train["epochs"], train["num_repeats"], train["batch_size"], train["scheduler_milestones"]) == (
        train_params["num_epochs"], train_params["num_repeats"], train_params["batch_size"],
        train_params["epoch_milestones"])
    assert [train[f"lr_{n}"] for n in ("generator", "discriminator", "kp_detector")] == [
        train_params[f"lr_{n}"] for n in ("generator", "discriminator", "kp_detector")]
    assert losses["generator_gan"] == weights["generator_gan"] and losses["scales"] == train_params["scales"]
    # ...and all of them through the converter: the model `fomm import-checkpoint` builds for this
    # config (so init_from works with the published weights) and every training number.
    expected_model, _ = model_config_from_official(official)
    assert from_mapping(ModelConfig, model, "model") == expected_model
    expected_losses, expected_train = train_sections_from_official(official)
    assert {k: losses[k] for k in expected_losses} == expected_losses
    assert {k: train[k] for k in expected_train} == expected_train
    # What the original file does not hold keeps this project's defaults.
    others = {k: v for k, v in train.items() if k not in expected_train}
    assert others == {k: v for k, v in to_mapping(TrainConfig()).items() if k not in expected_train}
    from_mapping(LossConfig, losses, "losses")


def test_the_issues_differences_are_gone():
    vox, adv = profile_sections("vox-256"), profile_sections("vox-adv-256")
    assert vox["model"]["discriminator"]["use_kp"] is False and vox["model"]["discriminator"]["sn"] is True
    assert (adv["train"]["epochs"], adv["train"]["batch_size"], adv["train"]["scheduler_milestones"]) == (150, 36, [])
    assert adv["model"]["discriminator"]["sn"] is False
    assert profile_sections("taichi-adv-256")["train"]["lr_kp_detector"] == 0.0


def test_profiles_ship_in_a_non_editable_install(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / item, source / item)
    for package in ("pipeline", "fomm_core"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("vox_fomm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"pipeline/profiles/{name}.yaml" for name in OFFICIAL_CONFIGS} <= names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True,
                   capture_output=True)
    listed = subprocess.run([sys.executable, "-c", "import pipeline; from pipeline import profiles; "
                             "print(pipeline.__file__); print(*profiles.available())"],
                            capture_output=True, text=True, check=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    installed, available = listed.stdout.splitlines()
    assert installed.startswith(str(tmp_path / "site")) and available.split() == sorted(OFFICIAL_CONFIGS)


def test_apply_swaps_only_the_fomm_sections(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    before = params.read_text()
    profiles.apply_profile("vox-adv-256", params)
    after = params.read_text()
    official = OFFICIAL_CONFIGS["vox-adv-256"]
    assert load_section(params, "model", ModelConfig) == model_config_from_official(official)[0]
    assert load_section(params, "losses", LossConfig).generator_gan == 1.0
    assert load_section(params, "train", TrainConfig).batch_size == 36
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
