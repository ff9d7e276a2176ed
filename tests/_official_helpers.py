"""Files in the layout of the original FOMM code, written from its documented names and shapes.

Independent of ``fomm_core.official`` on purpose: this module spells out the original
modules' tensors (names, shapes, registration order) from the architecture, so a converter
bug cannot hide behind a shared table. Weights are random with non-trivial BatchNorm
statistics; the anti-alias kernels are the real 2-D Gaussians.

``OFFICIAL_MODEL_PARAMS`` holds the model numbers of the eight published configs (the
``config/*.yaml`` files of the original repository).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from pathlib import Path

import torch
import yaml

_VOX_KP = {"temperature": 0.1, "block_expansion": 32, "max_features": 1024, "scale_factor": 0.25, "num_blocks": 5}
_VOX_GEN = {"block_expansion": 64, "max_features": 512, "num_down_blocks": 2, "num_bottleneck_blocks": 6,
            "estimate_occlusion_map": True,
            "dense_motion_params": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5, "scale_factor": 0.25}}
_COMMON = {"num_kp": 10, "num_channels": 3, "estimate_jacobian": True}
_DISC = {"scales": [1], "block_expansion": 32, "max_features": 512, "num_blocks": 4}


def _model_params(disc_extra: dict, kp_extra: dict | None = None) -> dict:
    return {"common_params": dict(_COMMON), "kp_detector_params": {**_VOX_KP, **(kp_extra or {})},
            "generator_params": copy.deepcopy(_VOX_GEN), "discriminator_params": {**_DISC, **disc_extra}}


OFFICIAL_MODEL_PARAMS = {
    "vox-256": _model_params({"sn": True}),
    "vox-adv-256": _model_params({"use_kp": True}),
    "taichi-256": _model_params({}),
    "taichi-adv-256": _model_params({"use_kp": True}),
    "mgif-256": _model_params({"sn": True}, {"single_jacobian_map": True}),
    "bair-256": _model_params({"sn": True}),
    "fashion-256": _model_params({}),
    "nemo-256": _model_params({"sn": True}),
}


def _training(epochs: int, repeats: int, milestones: list, batch: int, gan: int, lr_kp: float = 2.0e-4) -> dict:
    """The dataset and training numbers of a published face/body config."""
    return {
        "dataset_params": {"frame_shape": [256, 256, 3], "id_sampling": True,
                           "augmentation_params": {"flip_param": {"horizontal_flip": True, "time_flip": True},
                                                   "jitter_param": {"brightness": 0.1, "contrast": 0.1,
                                                                    "saturation": 0.1, "hue": 0.1}}},
        "train_params": {"num_epochs": epochs, "num_repeats": repeats, "epoch_milestones": milestones,
                         "lr_generator": 2.0e-4, "lr_discriminator": 2.0e-4, "lr_kp_detector": lr_kp,
                         "batch_size": batch, "scales": [1, 0.5, 0.25, 0.125], "checkpoint_freq": 50,
                         "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                         "loss_weights": {"generator_gan": gan, "discriminator_gan": 1, "feature_matching": [10] * 4,
                                          "perceptual": [10] * 5, "equivariance_value": 10,
                                          "equivariance_jacobian": 10}},
    }


# The four configs `fomm profile` reproduces, whole (model, dataset and training numbers).
OFFICIAL_CONFIGS = {
    "vox-256": {"model_params": OFFICIAL_MODEL_PARAMS["vox-256"], **_training(100, 75, [60, 90], 40, 0)},
    "vox-adv-256": {"model_params": OFFICIAL_MODEL_PARAMS["vox-adv-256"], **_training(150, 75, [], 36, 1)},
    "taichi-256": {"model_params": OFFICIAL_MODEL_PARAMS["taichi-256"], **_training(100, 150, [60, 90], 30, 0)},
    "taichi-adv-256": {"model_params": OFFICIAL_MODEL_PARAMS["taichi-adv-256"],
                       **_training(150, 150, [], 27, 1, lr_kp=0)},
}


def tiny_model_params(name: str = "vox-adv-256") -> dict:
    """The published config's structure with a few channels: same tensors, fast at 64 px."""
    params = copy.deepcopy(OFFICIAL_MODEL_PARAMS[name])
    params["common_params"]["num_kp"] = 4
    params["kp_detector_params"].update(block_expansion=4, max_features=16, num_blocks=3)
    params["generator_params"].update(block_expansion=4, max_features=16, num_bottleneck_blocks=2)
    params["generator_params"]["dense_motion_params"].update(block_expansion=4, max_features=16, num_blocks=3)
    params["discriminator_params"].update(block_expansion=4, max_features=16)  # 4 blocks, as published
    return params


def official_yaml(model_params: dict, frame_size: int = 256) -> dict:
    """A whole original-style config around ``model_params`` (the vox training numbers)."""
    return {
        "dataset_params": {"root_dir": "data/vox-png", "frame_shape": [frame_size, frame_size, 3], "id_sampling": True,
                           "augmentation_params": {"flip_param": {"horizontal_flip": True, "time_flip": True},
                                                   "jitter_param": {"brightness": 0.1, "contrast": 0.1,
                                                                    "saturation": 0.1, "hue": 0.1}}},
        "model_params": model_params,
        "train_params": {"num_epochs": 150, "num_repeats": 75, "epoch_milestones": [], "lr_generator": 2.0e-4,
                         "lr_discriminator": 2.0e-4, "lr_kp_detector": 2.0e-4, "batch_size": 36,
                         "scales": [1, 0.5, 0.25, 0.125], "checkpoint_freq": 50,
                         "transform_params": {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5},
                         "loss_weights": {"generator_gan": 1, "discriminator_gan": 1, "feature_matching": [10] * 4,
                                          "perceptual": [10] * 5, "equivariance_value": 10,
                                          "equivariance_jacobian": 10}},
        "reconstruction_params": {"num_videos": 1000, "format": ".mp4"},
        "animate_params": {"num_pairs": 50, "format": ".mp4",
                           "normalization_params": {"adapt_movement_scale": False, "use_relative_movement": True,
                                                    "use_relative_jacobian": True}},
        "visualizer_params": {"kp_size": 5, "draw_border": True, "colormap": "gist_rainbow"},
    }


# ---------------------------------------------------------------- layout (names -> shapes)


def _conv(prefix: str, out_ch: int, in_ch: int, k: int, bias: bool = True) -> list:
    items = [(f"{prefix}.weight", (out_ch, in_ch, k, k))]
    return items + ([(f"{prefix}.bias", (out_ch,))] if bias else [])


def _batchnorm(prefix: str, ch: int) -> list:
    return [(f"{prefix}.weight", (ch,)), (f"{prefix}.bias", (ch,)), (f"{prefix}.running_mean", (ch,)),
            (f"{prefix}.running_var", (ch,)), (f"{prefix}.num_batches_tracked", ())]


def _conv_bn(prefix: str, out_ch: int, in_ch: int, k: int = 3) -> list:
    return _conv(f"{prefix}.conv", out_ch, in_ch, k) + _batchnorm(f"{prefix}.norm", out_ch)


def _hourglass(prefix: str, expansion: int, in_features: int, blocks: int, max_features: int) -> tuple[list, int]:
    """Encoder down blocks then decoder up blocks; returns (tensors, output channels)."""
    level = lambda i: min(max_features, expansion * 2**i)  # noqa: E731
    items = []
    for i in range(blocks):
        items += _conv_bn(f"{prefix}.encoder.down_blocks.{i}", level(i + 1), in_features if i == 0 else level(i))
    for j, i in enumerate(reversed(range(blocks))):
        items += _conv_bn(f"{prefix}.decoder.up_blocks.{j}", level(i), (1 if i == blocks - 1 else 2) * level(i + 1))
    return items, expansion + in_features


def _kernel_size(scale: float) -> int:
    return 2 * round((1 / scale - 1) / 2 * 4) + 1


def official_layout(model_params: dict) -> dict[str, list[tuple[str, tuple]]]:
    """network -> [(original tensor name, shape)] in the original modules' order."""
    common, kp = model_params["common_params"], model_params["kp_detector_params"]
    gen, disc = model_params["generator_params"], model_params["discriminator_params"]
    dense = gen["dense_motion_params"]
    num_kp, ch = common["num_kp"], common["num_channels"]

    detector, out_ch = _hourglass("predictor", kp["block_expansion"], ch, kp["num_blocks"], kp["max_features"])
    detector += _conv("kp", num_kp, out_ch, 7)
    if common.get("estimate_jacobian"):
        maps = 1 if kp.get("single_jacobian_map") else num_kp
        detector += _conv("jacobian", 4 * maps, out_ch, 7)
    if kp.get("scale_factor", 1) != 1:
        detector.append(("down.weight", (ch, 1, _kernel_size(kp["scale_factor"]), _kernel_size(kp["scale_factor"]))))

    motion_in = (num_kp + 1) * (ch + 1)
    generator, out_ch = _hourglass("dense_motion_network.hourglass", dense["block_expansion"], motion_in,
                                   dense["num_blocks"], dense["max_features"])
    generator += _conv("dense_motion_network.mask", num_kp + 1, out_ch, 7)
    if gen.get("estimate_occlusion_map"):
        generator += _conv("dense_motion_network.occlusion", 1, out_ch, 7)
    if dense.get("scale_factor", 1) != 1:
        size = _kernel_size(dense["scale_factor"])
        generator.append(("dense_motion_network.down.weight", (ch, 1, size, size)))
    expansion, max_f, downs = gen["block_expansion"], gen["max_features"], gen["num_down_blocks"]
    level = lambda i: min(max_f, expansion * 2**i)  # noqa: E731
    generator += _conv_bn("first", expansion, ch, 7)
    for i in range(downs):
        generator += _conv_bn(f"down_blocks.{i}", level(i + 1), level(i))
    for i in range(downs):
        generator += _conv_bn(f"up_blocks.{i}", level(downs - i - 1), level(downs - i))
    for i in range(gen["num_bottleneck_blocks"]):
        f = level(downs)
        generator += (_conv(f"bottleneck.r{i}.conv1", f, f, 3) + _conv(f"bottleneck.r{i}.conv2", f, f, 3)
                      + _batchnorm(f"bottleneck.r{i}.norm1", f) + _batchnorm(f"bottleneck.r{i}.norm2", f))
    generator += _conv("final", ch, expansion, 7)

    discriminator = []
    expansion, max_f, blocks = disc.get("block_expansion", 64), disc.get("max_features", 512), disc.get("num_blocks", 4)
    level = lambda i: min(max_f, expansion * 2**i)  # noqa: E731

    def sn_conv(prefix, out_c, in_c, k):
        if not disc.get("sn"):
            return _conv(prefix, out_c, in_c, k)
        return [(f"{prefix}.bias", (out_c,)), (f"{prefix}.weight_orig", (out_c, in_c, k, k)),
                (f"{prefix}.weight_u", (out_c,)), (f"{prefix}.weight_v", (in_c * k * k,))]

    for scale in disc["scales"]:
        key = str(scale).replace(".", "-")
        for i in range(blocks):
            in_c = ch + num_kp * bool(disc.get("use_kp")) if i == 0 else level(i)
            discriminator += sn_conv(f"discs.{key}.down_blocks.{i}.conv", level(i + 1), in_c, 4)
            if i != 0:
                discriminator += [(f"discs.{key}.down_blocks.{i}.norm.weight", (level(i + 1),)),
                                  (f"discs.{key}.down_blocks.{i}.norm.bias", (level(i + 1),))]
        discriminator += sn_conv(f"discs.{key}.conv", 1, level(blocks), 1)
    return {"kp_detector": detector, "generator": generator, "discriminator": discriminator}


# ---------------------------------------------------------------- random weights


def _gaussian_2d(scale: float, channels: int) -> torch.Tensor:
    sigma = (1 / scale - 1) / 2
    size = _kernel_size(scale)
    grid = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-grid[:, None] ** 2 / (2 * sigma**2)) * torch.exp(-grid[None, :] ** 2 / (2 * sigma**2))
    return (g / g.sum()).view(1, 1, size, size).repeat(channels, 1, 1, 1)


def random_tensor(name: str, shape: tuple, gen: torch.Generator, model_params: dict) -> torch.Tensor:
    if name.endswith("num_batches_tracked"):
        return torch.tensor(int(torch.randint(1, 10**6, (1,), generator=gen)))
    if name.endswith("down.weight"):
        scale = (model_params["kp_detector_params"] if name == "down.weight"
                 else model_params["generator_params"]["dense_motion_params"])["scale_factor"]
        return _gaussian_2d(scale, shape[0])
    if name.endswith("running_mean"):
        return torch.randn(shape, generator=gen) * 0.2
    if name.endswith("running_var"):
        return torch.rand(shape, generator=gen) * 1.5 + 0.5
    if name.endswith(("weight_u", "weight_v")):
        return torch.nn.functional.normalize(torch.randn(shape, generator=gen), dim=0)
    if name.startswith("jacobian."):  # Jacobians near the identity, but not equal to it
        noise = torch.randn(shape, generator=gen)
        return noise * 0.002 if name.endswith("weight") else torch.tensor([1.0, 0, 0, 1]).repeat(shape[0] // 4) + 0.1 * noise
    if len(shape) > 1:  # conv weights
        return torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
    if ".norm" in name and name.endswith("weight"):
        return torch.rand(shape, generator=gen) * 0.5 + 0.75
    return torch.randn(shape, generator=gen) * 0.05


def official_state(model_params: dict, seed: int = 0, networks=("kp_detector", "generator", "discriminator"),
                   with_optimizers: bool = True, epoch: int = 99) -> dict:
    """An original-style checkpoint dict: OrderedDict state dicts, Adam states, epoch."""
    gen = torch.Generator().manual_seed(seed)
    state: dict = {}
    layout = official_layout(model_params)
    for network in networks:
        state[network] = OrderedDict((name, random_tensor(name, shape, gen, model_params))
                                     for name, shape in layout[network])
    if with_optimizers:
        for network in networks:
            params = [n for n, _ in layout[network]
                      if not n.endswith(("running_mean", "running_var", "num_batches_tracked", "down.weight",
                                         "weight_u", "weight_v"))]
            first = state[network][params[0]]
            state[f"optimizer_{network}"] = {
                "state": {0: {"step": 10, "exp_avg": torch.zeros_like(first), "exp_avg_sq": torch.ones_like(first)}},
                "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "eps": 1e-8, "weight_decay": 0,
                                  "amsgrad": False, "params": list(range(len(params)))}]}
    state["epoch"] = epoch
    return state


def write_official(folder: Path, model_params: dict, name: str = "model", seed: int = 0, legacy: bool = True,
                   frame_size: int = 256, **kwargs) -> tuple[Path, Path]:
    """(checkpoint.pth.tar, config.yaml); ``legacy`` uses torch < 1.6's non-zip format, as the published files."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, config = folder / f"{name}-cpk.pth.tar", folder / f"{name}.yaml"
    torch.save(official_state(model_params, seed, **kwargs), checkpoint, _use_new_zipfile_serialization=not legacy)
    config.write_text(yaml.safe_dump(official_yaml(model_params, frame_size), sort_keys=False))
    return checkpoint, config
