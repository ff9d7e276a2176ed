"""The original FOMM YAML config (``config/vox-256.yaml`` and friends) <-> this project's configs.

Facts about the original files: ``model_params`` holds ``common_params`` (``num_kp``,
``num_channels``, ``estimate_jacobian``), ``kp_detector_params``, ``generator_params`` (with
a nested ``dense_motion_params``) and ``discriminator_params``; each is passed as keyword
arguments to the original module, so a key the module does not take is an error there and
a missing one takes the module's default (listed in ``_DEFAULTS``; ``None`` = required).
``dataset_params.frame_shape`` is the training frame size, ``train_params`` the schedule
and loss weights (Adam betas (0.5, 0.999) and the x0.1 learning-rate drops are fixed in the
original training code, not in the YAML).

Models built from an original config use the original code's conventions (strided
anti-aliased downscaling, a fresh heatmap grid, flow resizing with align_corners=False):
the published weights were trained with them.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..config import ConfigError, from_mapping
from ..model_config import ModelConfig
from .layout import official_scale_key, project_scale_key

# Keyword arguments of the original modules and their defaults (None: no default).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "common_params": {"num_kp": None, "num_channels": None, "estimate_jacobian": False},
    "kp_detector_params": {"block_expansion": None, "max_features": None, "num_blocks": None, "temperature": None,
                           "scale_factor": 1, "single_jacobian_map": False, "pad": 0},
    "generator_params": {"block_expansion": None, "max_features": None, "num_down_blocks": None,
                         "num_bottleneck_blocks": None, "estimate_occlusion_map": False,
                         "dense_motion_params": None},
    "dense_motion_params": {"block_expansion": None, "num_blocks": None, "max_features": None, "scale_factor": 1,
                            "kp_variance": 0.01},
    "discriminator_params": {"scales": (), "block_expansion": 64, "num_blocks": 4, "max_features": 512,
                             "sn": False, "use_kp": False, "kp_variance": 0.01},
}
ORIGINAL_CONVENTIONS = {"downsample": "strided", "heatmap_grid": "fresh", "flow_resize_align_corners": False}
DEFAULT_FRAME_SHAPE = [256, 256, 3]  # the original dataset's default
ADAM_BETAS = (0.5, 0.999)
LR_DROP = 0.1


def _section(params: Mapping, name: str, where: str) -> dict[str, Any]:
    """One ``*_params`` mapping with the original defaults filled in; unknown keys are errors."""
    given = params.get(name) or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"{where}.{name}: expected a mapping, got {given!r}")
    defaults = _DEFAULTS[name]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}.{name}.{unknown[0]}: not a parameter of the original model "
                          f"(expected some of {', '.join(defaults)})")
    values = {**defaults, **given}
    missing = [k for k, v in values.items() if v is None and k != "dense_motion_params"]
    if missing:
        raise ConfigError(f"{where}.{name}.{missing[0]}: required by the original model but missing")
    return values


def model_config_from_official(config: Mapping, where: str = "config") -> tuple[ModelConfig, dict[str, str]]:
    """(ModelConfig, {our discriminator key: original key}) for an original YAML mapping."""
    params = config.get("model_params") if isinstance(config, Mapping) else None
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: no model_params mapping; is this an original FOMM config (config/*.yaml)?")
    where = f"{where}: model_params"
    unknown = sorted(set(params) - {"common_params", "kp_detector_params", "generator_params",
                                    "discriminator_params"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown section")
    common = _section(params, "common_params", where)
    kp = _section(params, "kp_detector_params", where)
    gen = _section(params, "generator_params", where)
    if gen["dense_motion_params"] is None:
        raise ConfigError(f"{where}.generator_params: no dense_motion_params; a generator without motion "
                          "is not supported")
    dense = _section(gen, "dense_motion_params", f"{where}.generator_params")
    disc = _section(params, "discriminator_params", where)
    scales = list(disc["scales"])
    if not scales:
        raise ConfigError(f"{where}.discriminator_params.scales: empty; list at least one scale, e.g. [1]")
    mapping = {
        "num_kp": common["num_kp"], "num_channels": common["num_channels"],
        "estimate_jacobian": common["estimate_jacobian"], "downsample": ORIGINAL_CONVENTIONS["downsample"],
        "kp": {"block_expansion": kp["block_expansion"], "max_features": kp["max_features"],
               "num_blocks": kp["num_blocks"], "temperature": kp["temperature"], "scale_factor": kp["scale_factor"],
               "pad": kp["pad"], "single_jacobian_map": kp["single_jacobian_map"],
               "heatmap_grid": ORIGINAL_CONVENTIONS["heatmap_grid"]},
        "generator": {
            "block_expansion": gen["block_expansion"], "max_features": gen["max_features"],
            "num_down_blocks": gen["num_down_blocks"], "num_bottleneck_blocks": gen["num_bottleneck_blocks"],
            "estimate_occlusion_map": gen["estimate_occlusion_map"],
            "flow_resize_align_corners": ORIGINAL_CONVENTIONS["flow_resize_align_corners"],
            "dense_motion": {"block_expansion": dense["block_expansion"], "max_features": dense["max_features"],
                             "num_blocks": dense["num_blocks"], "scale_factor": dense["scale_factor"],
                             "kp_variance": dense["kp_variance"]},
        },
        "discriminator": {"scales": scales, "block_expansion": disc["block_expansion"],
                          "max_features": disc["max_features"], "num_blocks": disc["num_blocks"], "sn": disc["sn"],
                          "use_kp": disc["use_kp"], "kp_variance": disc["kp_variance"]},
    }
    model = from_mapping(ModelConfig, mapping, where)
    scale_keys = {project_scale_key(float(s)): official_scale_key(s) for s in scales}
    return model, scale_keys


def frame_size_from_official(config: Mapping, where: str = "config") -> int:
    """The square training frame size of ``dataset_params.frame_shape`` ([H, W, C])."""
    dataset = config.get("dataset_params") or {}
    shape = dataset.get("frame_shape", DEFAULT_FRAME_SHAPE) if isinstance(dataset, Mapping) else None
    if (not isinstance(shape, (list, tuple)) or len(shape) < 2
            or not all(isinstance(v, int) and v > 0 for v in shape[:2])):
        raise ConfigError(f"{where}: dataset_params.frame_shape must be [height, width, channels], got {shape!r}")
    if shape[0] != shape[1]:
        raise ConfigError(f"{where}: dataset_params.frame_shape {list(shape)} is not square; this project trains "
                          "and animates square frames")
    return int(shape[0])


def unexpressible_conventions(model: ModelConfig) -> list[str]:
    """Why the original code could not run ``model`` as it is (empty: it can)."""
    reasons = []
    downscales = [model.kp.scale_factor, model.generator.dense_motion.scale_factor]
    if model.downsample != "strided" and any(s != 1 for s in downscales):
        reasons.append("model.downsample is 'bilinear'; the original code only downsamples by striding")
    if model.kp.heatmap_grid != "fresh" and model.kp.pad != 3:
        reasons.append("model.kp.heatmap_grid is 'cropped'; the original code stretches a fresh grid over the "
                       "heatmap")
    dense_scale = model.generator.dense_motion.scale_factor
    if model.generator.flow_resize_align_corners and dense_scale != 2.0 ** -model.generator.num_down_blocks:
        reasons.append("model.generator.flow_resize_align_corners is true with a flow of another size than the "
                       "features; the original code resizes it with align_corners=False")
    return reasons


def official_model_params(model: ModelConfig) -> dict[str, Any]:
    """``model_params`` of an original YAML for ``model`` (integral scales written as ints)."""

    def number(value: float) -> float | int:
        return int(value) if float(value).is_integer() else value

    kp, gen, disc = model.kp, model.generator, model.discriminator
    dense = gen.dense_motion
    kp_params = {"temperature": kp.temperature, "block_expansion": kp.block_expansion,
                 "max_features": kp.max_features, "scale_factor": number(kp.scale_factor),
                 "num_blocks": kp.num_blocks}
    if kp.pad:
        kp_params["pad"] = kp.pad
    if kp.single_jacobian_map:
        kp_params["single_jacobian_map"] = True
    return {
        "common_params": {"num_kp": model.num_kp, "num_channels": model.num_channels,
                          "estimate_jacobian": model.estimate_jacobian},
        "kp_detector_params": kp_params,
        "generator_params": {
            "block_expansion": gen.block_expansion, "max_features": gen.max_features,
            "num_down_blocks": gen.num_down_blocks, "num_bottleneck_blocks": gen.num_bottleneck_blocks,
            "estimate_occlusion_map": gen.estimate_occlusion_map,
            "dense_motion_params": {"block_expansion": dense.block_expansion, "max_features": dense.max_features,
                                    "num_blocks": dense.num_blocks, "scale_factor": number(dense.scale_factor),
                                    "kp_variance": dense.kp_variance},
        },
        "discriminator_params": {"scales": [number(s) for s in disc.scales], "block_expansion": disc.block_expansion,
                                 "max_features": disc.max_features, "num_blocks": disc.num_blocks, "sn": disc.sn,
                                 "use_kp": disc.use_kp, "kp_variance": disc.kp_variance},
    }


def _flip(value: Any) -> float:
    return 0.5 if value else 0.0


def train_sections_from_official(config: Mapping, where: str = "config") -> tuple[dict, dict]:
    """(losses, train) params.yaml sections equal to the YAML's training numbers.

    What the original YAML does not hold keeps this project's default; the learning rate
    schedule, Adam betas and augmentation follow the original training code.
    """
    train = config.get("train_params")
    dataset = config.get("dataset_params") or {}
    if not isinstance(train, Mapping):
        raise ConfigError(f"{where}: no train_params mapping")
    transform = train.get("transform_params") or {}
    weights = train.get("loss_weights") or {}
    augmentation = dataset.get("augmentation_params") or {}
    flips = augmentation.get("flip_param") or {}
    jitter = augmentation.get("jitter_param")
    losses = {
        "perceptual": [float(w) for w in weights.get("perceptual", [0] * 5)],
        "equivariance_value": float(weights.get("equivariance_value", 0)),
        "equivariance_jacobian": float(weights.get("equivariance_jacobian", 0)),
        "generator_gan": float(weights.get("generator_gan", 0)),
        "discriminator_gan": float(weights.get("discriminator_gan", 0)),
        "feature_matching": [float(w) for w in weights.get("feature_matching", [])],
        "scales": [float(s) for s in train["scales"]],
        "sigma_affine": float(transform["sigma_affine"]),
        "sigma_tps": float(transform["sigma_tps"]),
        "points_tps": int(transform["points_tps"]),
        "perceptual_backbone": "pretrained",  # the original uses torchvision's ImageNet VGG-19
    }
    train_section = {
        "epochs": int(train["num_epochs"]),
        "num_repeats": int(train.get("num_repeats", 1)),
        "batch_size": int(train["batch_size"]),
        "lr_generator": float(train["lr_generator"]),
        "lr_discriminator": float(train["lr_discriminator"]),
        "lr_kp_detector": float(train["lr_kp_detector"]),
        "betas": list(ADAM_BETAS),
        "scheduler_milestones": [int(m) for m in train.get("epoch_milestones") or []],
        "scheduler_gamma": LR_DROP,
        "frame_size": frame_size_from_official(config, where),
        "id_sampling": bool(dataset.get("id_sampling", False)),
        "augment": {
            "horizontal_flip": _flip(flips.get("horizontal_flip")),
            "time_flip": _flip(flips.get("time_flip")),
            "jitter": 1.0 if jitter else 0.0,
            **{k: float((jitter or {}).get(k, 0.0)) for k in ("brightness", "contrast", "saturation", "hue")},
        },
    }
    return losses, train_section


def official_train_params(losses: Mapping, train: Mapping) -> dict[str, Any]:
    """``train_params`` of an original YAML from our losses/train sections (mappings)."""
    return {
        "num_epochs": train["epochs"], "num_repeats": train["num_repeats"],
        "epoch_milestones": list(train["scheduler_milestones"]),
        "lr_generator": train["lr_generator"], "lr_discriminator": train["lr_discriminator"],
        "lr_kp_detector": train["lr_kp_detector"], "batch_size": train["batch_size"],
        "scales": list(losses["scales"]), "checkpoint_freq": train.get("checkpoint_every", 1),
        "transform_params": {"sigma_affine": losses["sigma_affine"], "sigma_tps": losses["sigma_tps"],
                             "points_tps": losses["points_tps"]},
        "loss_weights": {"generator_gan": losses["generator_gan"], "discriminator_gan": losses["discriminator_gan"],
                         "feature_matching": list(losses["feature_matching"]),
                         "perceptual": list(losses["perceptual"]),
                         "equivariance_value": losses["equivariance_value"],
                         "equivariance_jacobian": losses["equivariance_jacobian"]},
    }
