"""Published FOMM checkpoints: layouts of all eight configs, import -> animate, export, round trip, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from _inference_helpers import (ffprobe_streams, make_image, make_video, one_line_error, run_cli, run_in_process,
                                save_tiny_checkpoint)
from _official_helpers import (OFFICIAL_MODEL_PARAMS, official_layout, official_state, official_yaml,
                               tiny_model_params, write_official)
from fomm_core.checkpoint import load_inference_models, read_checkpoint, save_checkpoint
from fomm_core.errors import FommError
from fomm_core.inference.animate import Animator
from fomm_core.model_config import ModelConfig
from fomm_core.models import build_models, count_parameters
from fomm_core.official import (export_checkpoint, import_checkpoint, model_config_from_official,
                                official_tensor_shapes)
from fomm_core.weights import sha256_of_file

SIZE = 64


@pytest.mark.parametrize("name", sorted(OFFICIAL_MODEL_PARAMS))
def test_every_official_config_has_the_original_tensor_layout(name):
    yaml_config = official_yaml(OFFICIAL_MODEL_PARAMS[name])
    config, scale_keys = model_config_from_official(yaml_config, name)
    assert (config.downsample, config.kp.heatmap_grid, config.generator.flow_resize_align_corners) == (
        "strided", "fresh", False)
    expected = {net: dict(items) for net, items in official_layout(OFFICIAL_MODEL_PARAMS[name]).items()}
    ours = official_tensor_shapes(config, scale_keys)
    for network in expected:
        assert list(ours[network].items()) == list(expected[network].items()), network  # names, shapes, order


def test_published_parameter_counts():
    config, _ = model_config_from_official(official_yaml(OFFICIAL_MODEL_PARAMS["vox-adv-256"]))
    with torch.device("meta"):
        kp, gen, disc = build_models(config)
    assert (count_parameters(kp), count_parameters(gen), count_parameters(disc)) == (14_215_368, 45_575_391, 2_769_089)


def _project_tensors(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    return {net: state[net] for net in ("kp_detector", "generator", "discriminator") if net in state}


@pytest.mark.parametrize("name,legacy", [("vox-adv-256", True), ("mgif-256", False), ("vox-256", True)])
def test_import_animate_export_round_trip(tmp_path, name, legacy):
    params = tiny_model_params(name)
    source, config_file = write_official(tmp_path / "official", params, name, seed=3, legacy=legacy, frame_size=SIZE)
    original = torch.load(source, weights_only=True)

    imported = import_checkpoint(source, config_file, tmp_path / "imported.pt")
    assert imported.networks == ["kp_detector", "generator", "discriminator"] and imported.epoch == 99
    state = read_checkpoint(tmp_path / "imported.pt")
    assert state["imported_from"]["sha256"] == sha256_of_file(source)
    assert state["imported_from"]["file"] == source.name and state["imported_from"]["config_file"] == config_file.name

    # A normal project checkpoint: loads for inference at its training size and animates.
    kp, gen, config, frame_size, *_ = load_inference_models(tmp_path / "imported.pt")
    assert frame_size == SIZE and config.kp.single_jacobian_map == (name == "mgif-256")
    frames = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    out = Animator(kp, gen, frames[:1], adapt_scale=True)(frames)
    assert out.shape == (3, 3, SIZE, SIZE) and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    detected = kp(frames)
    assert detected["jacobian"].shape == (3, 4, 2, 2)
    assert not torch.allclose(detected["jacobian"][:, 0], detected["jacobian"][:, 1])  # per-keypoint, even if shared map

    # Export: the original names, shapes and values, the Adam states and epoch, a YAML that builds the same model.
    export_checkpoint(tmp_path / "imported.pt", tmp_path / "out.pth.tar", tmp_path / "out.yaml")
    exported = torch.load(tmp_path / "out.pth.tar", weights_only=True)
    layout = official_layout(params)
    for network in ("kp_detector", "generator", "discriminator"):
        assert [(k, tuple(v.shape)) for k, v in exported[network].items()] == layout[network]
        for key, value in original[network].items():
            if key.endswith("down.weight"):  # recomputed from the config: equal to float rounding
                assert torch.allclose(exported[network][key], value, atol=1e-7)
            else:
                assert torch.equal(exported[network][key], value), key
        assert exported[f"optimizer_{network}"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert exported["epoch"] == 99
    written = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert model_config_from_official(written)[0] == config
    assert written["train_params"] == official_yaml(params, SIZE)["train_params"]  # the imported YAML comes back

    # ...and importing the export gives identical tensors.
    import_checkpoint(tmp_path / "out.pth.tar", tmp_path / "out.yaml", tmp_path / "again.pt")
    first, again = _project_tensors(tmp_path / "imported.pt"), _project_tensors(tmp_path / "again.pt")
    assert first.keys() == again.keys()
    for network in first:
        assert first[network].keys() == again[network].keys()
        assert all(torch.equal(first[network][k], again[network][k]) for k in first[network])


def test_the_full_size_published_model_imports_and_animates_at_256_px(tmp_path):
    # The real vox-adv-256 layout (60M parameters, legacy torch format as published), once.
    source, config = write_official(tmp_path, OFFICIAL_MODEL_PARAMS["vox-adv-256"], "vox-adv-256",
                                    with_optimizers=False)
    imported = import_checkpoint(source, config, tmp_path / "vox-adv.pt")
    assert imported.frame_size == 256 and imported.model_config.kp.heatmap_grid == "fresh"
    kp, gen, *_ = load_inference_models(tmp_path / "vox-adv.pt")
    frames = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    out = Animator(kp, gen, frames[:1])(frames[1:])
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all()


def test_files_without_discriminator_or_optimizers_import(tmp_path):
    params = tiny_model_params("vox-256")
    source, config_file = write_official(tmp_path, params, networks=("kp_detector", "generator"),
                                         with_optimizers=False)
    imported = import_checkpoint(source, config_file, tmp_path / "imported.pt")
    assert imported.networks == ["kp_detector", "generator"]
    assert "discriminator" not in read_checkpoint(tmp_path / "imported.pt")


def test_missing_batchnorm_counters_of_old_files_are_tolerated(tmp_path):
    params = tiny_model_params("vox-256")
    state = official_state(params)
    for network in ("kp_detector", "generator"):
        for key in [k for k in state[network] if k.endswith("num_batches_tracked")]:
            del state[network][key]
    torch.save(state, tmp_path / "old.pth.tar")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(official_yaml(params)))
    import_checkpoint(tmp_path / "old.pth.tar", tmp_path / "c.yaml", tmp_path / "imported.pt")


# ---------------------------------------------------------------- errors


@pytest.fixture()
def official_files(tmp_path):
    return write_official(tmp_path / "official", tiny_model_params("vox-adv-256"))


def _import_error(source, config, out) -> str:
    with pytest.raises(FommError) as info:
        import_checkpoint(source, config, out)
    message = str(info.value)
    assert "\n" not in message and not out.exists()
    return message


def test_config_that_does_not_match_the_weights_names_the_tensor(tmp_path, official_files):
    source, config_file = official_files
    data = yaml.safe_load(config_file.read_text())
    data["model_params"]["common_params"]["num_kp"] = 6
    config_file.write_text(yaml.safe_dump(data))
    message = _import_error(source, config_file, tmp_path / "x.pt")
    assert "tensor 'kp.weight' has shape (4, 7, 7, 7) but the config's model needs (6, 7, 7, 7)" in message

    data["model_params"]["common_params"]["num_kp"] = 4
    data["model_params"]["discriminator_params"]["sn"] = True  # the file's discriminator has plain convs
    config_file.write_text(yaml.safe_dump(data))
    message = _import_error(source, config_file, tmp_path / "x.pt")
    assert "discriminator has no tensor 'discs.1.down_blocks.0.conv.weight_orig'" in message

    data["model_params"]["discriminator_params"].update(sn=False, num_blocks=2)
    config_file.write_text(yaml.safe_dump(data))
    message = _import_error(source, config_file, tmp_path / "x.pt")
    assert "tensor 'discs.1.down_blocks.2.conv.weight' has no place in the config's model" in message


def test_missing_tensor_and_wrong_kernel_are_named(tmp_path):
    params = tiny_model_params("vox-adv-256")
    state = official_state(params)
    del state["generator"]["bottleneck.r1.norm2.running_var"]
    torch.save(state, tmp_path / "cut.pth.tar")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(official_yaml(params)))
    message = _import_error(tmp_path / "cut.pth.tar", tmp_path / "c.yaml", tmp_path / "x.pt")
    assert "generator has no tensor 'bottleneck.r1.norm2.running_var'" in message

    state = official_state(params)
    state["kp_detector"]["down.weight"] = torch.rand_like(state["kp_detector"]["down.weight"])
    torch.save(state, tmp_path / "kernel.pth.tar")
    message = _import_error(tmp_path / "kernel.pth.tar", tmp_path / "c.yaml", tmp_path / "x.pt")
    assert "'down.weight' is not the anti-alias kernel of the config's scale_factor" in message


def test_truncated_foreign_and_project_files_are_one_line_errors(tmp_path, official_files):
    source, config_file = official_files
    data = source.read_bytes()
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(data[: len(data) // 2])
    assert "cannot read checkpoint" in _import_error(truncated, config_file, tmp_path / "x.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert "not an original FOMM checkpoint (no 'kp_detector'" in _import_error(foreign, config_file, tmp_path / "x.pt")
    ours = tmp_path / "ours.pt"
    save_checkpoint(ours, model_config=ModelConfig(), models={})
    assert "already a fomm-checkpoint-v1 checkpoint" in _import_error(ours, config_file, tmp_path / "x.pt")
    assert "checkpoint not found" in _import_error(tmp_path / "nope.pth.tar", config_file, tmp_path / "x.pt")


def test_bad_configs_are_one_line_errors(tmp_path, official_files):
    source, config_file = official_files
    cases = {
        "no model_params mapping": "dataset_params: {}\n",
        "kp_detector_params.sigma: not a parameter of the original model": yaml.safe_dump(
            {"model_params": {**tiny_model_params(), "kp_detector_params": {
                **tiny_model_params()["kp_detector_params"], "sigma": 1}}}),
        "generator_params.num_down_blocks: required": yaml.safe_dump({"model_params": {**tiny_model_params(), "generator_params": {
            k: v for k, v in tiny_model_params()["generator_params"].items() if k != "num_down_blocks"}}}),
        "frame_shape [256, 128, 3] is not square": yaml.safe_dump(
            {**official_yaml(tiny_model_params()), "dataset_params": {"frame_shape": [256, 128, 3]}}),
        "not valid YAML": "model_params: [unclosed\n",
    }
    for expected, text in cases.items():
        config_file.write_text(text)
        assert expected in _import_error(source, config_file, tmp_path / "x.pt")
    assert "config not found" in _import_error(source, tmp_path / "none.yaml", tmp_path / "x.pt")


class _RunsCode:
    """Unpickling this calls ``Path.touch`` on the marker: arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, official_files):
    _, config_file = official_files
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth.tar"
    torch.save({"generator": {}, "kp_detector": {}, "epoch": _RunsCode(marker)}, evil)
    message = _import_error(evil, config_file, tmp_path / "x.pt")
    assert "not a weights-only torch file" in message and not marker.exists()
    # The file is really armed: a plain (unsafe) load runs the code.
    torch.load(evil, weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------- export


def test_export_refuses_conventions_the_original_cannot_express(tmp_path):
    path = tmp_path / "ours.pt"
    kp, gen, _ = build_models(ModelConfig())
    save_checkpoint(path, model_config=ModelConfig(), models={"kp_detector": kp, "generator": gen})
    with pytest.raises(FommError, match="the original code cannot run this model: model.downsample is 'bilinear'"):
        export_checkpoint(path, tmp_path / "x.pth.tar", tmp_path / "x.yaml")
    config = ModelConfig(downsample="strided")
    save_checkpoint(path, model_config=config, models={"kp_detector": kp, "generator": gen})
    with pytest.raises(FommError, match="model.kp.heatmap_grid is 'cropped'"):
        export_checkpoint(path, tmp_path / "x.pth.tar", tmp_path / "x.yaml")
    assert not (tmp_path / "x.pth.tar").exists() and not (tmp_path / "x.yaml").exists()


def test_export_of_a_trained_checkpoint_reorders_adam_states_to_the_original_parameters(tmp_path):
    params = tiny_model_params("vox-adv-256")
    config, _ = model_config_from_official(official_yaml(params))
    kp, gen, disc = build_models(config)
    optimizers = {}
    for name, module in (("kp_detector", kp), ("generator", gen), ("discriminator", disc)):
        opt = torch.optim.Adam(module.parameters(), lr=1e-4, betas=(0.5, 0.999))
        for p in module.parameters():
            p.grad = torch.full_like(p, 0.5)
        opt.step()
        optimizers[name] = opt.state_dict()
    path = tmp_path / "trained.pt"
    save_checkpoint(path, model_config=config, models={"kp_detector": kp, "generator": gen, "discriminator": disc},
                    extra={"optimizers": optimizers, "epoch": 3,
                           "train_config": {"frame_size": SIZE, "lr_generator": 1e-4}})
    export_checkpoint(path, tmp_path / "x.pth.tar", tmp_path / "x.yaml")
    exported = torch.load(tmp_path / "x.pth.tar", weights_only=True)
    assert exported["epoch"] == 2  # the original stores the index of the last finished epoch
    for network in ("kp_detector", "generator", "discriminator"):
        parameters = [(name, shape) for name, shape in official_layout(params)[network]
                      if not name.endswith(("running_mean", "running_var", "num_batches_tracked", "down.weight",
                                            "weight_u", "weight_v"))]
        adam = exported[f"optimizer_{network}"]
        assert adam["param_groups"][0]["params"] == list(range(len(parameters)))
        for index, (name, shape) in enumerate(parameters):
            assert tuple(adam["state"][index]["exp_avg"].shape) == shape, (network, name)
    assert exported["optimizer_generator"]["param_groups"][0]["lr"] == 1e-4
    written = yaml.safe_load((tmp_path / "x.yaml").read_text())
    assert written["dataset_params"]["frame_shape"] == [SIZE, SIZE, 3]
    assert written["model_params"]["discriminator_params"]["scales"] == [1]  # key 'discs.1', as the original


# ---------------------------------------------------------------- the two commands


def test_cli_import_animate_export(tmp_path):
    source, config = write_official(tmp_path / "official", tiny_model_params("vox-adv-256"), "vox-adv-256",
                                    frame_size=SIZE)
    done = run_in_process(["import-checkpoint", str(source), "--config", str(config), "--out", "vox-adv.pt"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "vox-adv-256-cpk.pth.tar, epoch 99 with vox-adv-256.yaml -> vox-adv.pt" in done.stdout
    assert "kp_detector, generator, discriminator; 4 keypoints, trained at 64 px" in done.stdout
    again = run_in_process(["import-checkpoint", str(source), "--config", str(config), "--out", "vox-adv.pt"], tmp_path)
    assert again.returncode == 0, again.stderr  # its own earlier output is replaced

    # Every fomm command takes it as it is: animate a source image with a driving video (a real process).
    make_image(tmp_path / "source.png")
    make_video(tmp_path / "driving.mp4", frames=6)
    run_cli(["animate", "--checkpoint", "vox-adv.pt", "--source", "source.png", "--driving", "driving.mp4",
             "--out", "animated.mp4", "--device", "cpu"], tmp_path)
    assert int(ffprobe_streams(tmp_path / "animated.mp4")["video"]["nb_frames"]) == 6

    done = run_in_process(["export-checkpoint", "vox-adv.pt", "--out", "mine.pth.tar", "--config-out", "mine.yaml"],
                     tmp_path)
    assert done.returncode == 0, done.stderr
    assert "-> mine.pth.tar (kp_detector, generator, discriminator) and mine.yaml" in done.stdout
    assert (tmp_path / "mine.yaml").read_text().startswith("# Written by fomm export-checkpoint from vox-adv.pt")
    again = run_in_process(["export-checkpoint", "vox-adv.pt", "--out", "mine.pth.tar", "--config-out", "mine.yaml"],
                      tmp_path)
    assert again.returncode == 0, again.stderr


def test_cli_refuses_without_touching_anything(tmp_path):
    source, config = write_official(tmp_path, tiny_model_params("vox-256"))
    precious = tmp_path / "precious.pt"
    precious.write_bytes(b"somebody's file")
    refused = {
        ("import-checkpoint", str(source), "--config", str(config), "--out", str(precious)):
            "precious.pt exists and was not written by `fomm import-checkpoint`",
        ("import-checkpoint", str(source), "--config", str(config), "--out", str(source)): "is the input",
        ("import-checkpoint", str(config), "--config", str(config), "--out", "x.pt"): "cannot read checkpoint",
        ("export-checkpoint", "ours.pt", "--out", "x.pth.tar", "--config-out", "x.yaml"):
            "the original code cannot run this model: model.downsample",
        ("export-checkpoint", "imported.pt", "--out", "precious.pt", "--config-out", "x.yaml"):
            "precious.pt exists and was not written by `fomm export-checkpoint`",
        ("export-checkpoint", "imported.pt", "--out", "x.pth.tar", "--config-out", str(config)):
            "--config-out",
        ("export-checkpoint", "imported.pt", "--out", "x.yaml", "--config-out", "x.yaml"): "the same file",
    }
    save_tiny_checkpoint(tmp_path / "ours.pt")
    assert run_in_process(["import-checkpoint", str(source), "--config", str(config), "--out", "imported.pt"],
                     tmp_path).returncode == 0
    for args, message in refused.items():
        one_line_error(run_in_process(list(args), tmp_path), message)
    # The real process too: one line on stderr, exit code 2.
    one_line_error(run_cli(["import-checkpoint", str(source), "--config", str(config), "--out", str(precious)],
                            tmp_path, check=False), "was not written by `fomm import-checkpoint`")
    assert precious.read_bytes() == b"somebody's file"
    assert not any((tmp_path / name).exists() for name in ("x.pt", "x.pth.tar", "x.yaml"))
