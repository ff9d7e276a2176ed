"""Imported published models against the original first-order-model code: keypoints and frames.

Needs a checkout of https://github.com/AliaksandrSiarohin/first-order-model (not part of this
repository; nothing of it is copied here, it is imported at run time from the given path):

    FOMM_ORIGINAL_REPO=/path/to/first-order-model .venv/bin/python bench/official_exactness.py [vox-adv-256 ...]

Per config of its ``config/`` folder: the original modules with random weights and non-trivial
BatchNorm statistics are saved as a torch-1.0-style (legacy format) checkpoint, imported with
``fomm_core.official``, and both implementations run on the same 256 px frames (a real portrait
and rotated/zoomed copies): keypoint values and Jacobians, then animation with relative motion,
relative Jacobians and adapt scale (the original demo's ``normalize_kp``). Then the checkpoint
is exported, loaded by the original ``demo.load_checkpoints`` (strict), compared tensor by
tensor, and imported again.

The original code targets torch 1.0, whose ``grid_sample`` behaved as ``align_corners=True``
(the weights were trained so); on a current torch it defaults to False. The comparison runs
the original with ``grid_sample`` defaulting to True (a shim installed here, in memory only)
and also reports how far the unshimmed original drifts from that. Without the repository
the script prints ``{"skipped": ...}``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PORTRAIT = Path("/work/shared/faces/astronaut.png")


def install_original(path: Path) -> dict:
    """Import the original modules from ``path`` with the torch-1.0 ``grid_sample`` default."""
    import torch.nn.functional as F

    sys.path.insert(0, str(path))
    state = {"torch10": True}
    original_grid_sample = F.grid_sample

    def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
        if align_corners is None:
            align_corners = state["torch10"]
        return original_grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)

    F.grid_sample = grid_sample
    # Modules the original imports for features not used here (video files, plots).
    for name in ("imageio", "skimage", "skimage.transform", "skimage.draw", "frames_dataset"):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = module
    sys.modules["skimage"].img_as_ubyte = lambda x: x
    sys.modules["skimage.transform"].resize = lambda *a, **k: None
    sys.modules["skimage.draw"].disk = lambda *a, **k: None
    sys.modules["frames_dataset"].PairedDataset = object
    import demo  # noqa: F401  (load_checkpoints)
    from animate import normalize_kp  # noqa: F401
    return state


def randomise(module, gen) -> None:
    """Random weights, BatchNorm statistics away from (0, 1), Jacobian heads near identity."""
    import torch

    for name, t in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            t.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
        elif name.endswith("running_mean"):
            t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
        elif name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=gen) * 1.5 + 0.5)
        elif "norm" in name and name.endswith("weight"):
            t.copy_(torch.rand(t.shape, generator=gen) * 0.5 + 0.75)
        elif name == "jacobian.weight":
            t.copy_(torch.randn(t.shape, generator=gen) * 0.002)
        elif name == "jacobian.bias":
            t.add_(torch.randn(t.shape, generator=gen) * 0.1)
        elif name.endswith(("down.weight", "weight_u", "weight_v")):
            continue
        elif name.endswith(("weight", "weight_orig")):
            t.copy_(torch.randn(t.shape, generator=gen) * t[0].numel() ** -0.5)
        elif name.endswith("bias"):
            t.copy_(torch.randn(t.shape, generator=gen) * 0.05)
    if hasattr(module, "final"):  # livelier frames than plain random weights give
        module.final.weight.data.mul_(8.0)


def frames(size: int = 256, count: int = 6):
    import cv2
    import numpy as np
    import torch

    if PORTRAIT.is_file():
        image = cv2.cvtColor(cv2.imread(str(PORTRAIT)), cv2.COLOR_BGR2RGB)
    else:
        image = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8), (9, 9), 0)
    h, w = image.shape[:2]
    s = min(h, w)
    image = cv2.resize(image[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2], (size, size),
                       interpolation=cv2.INTER_AREA)
    driving = [cv2.warpAffine(image, cv2.getRotationMatrix2D((size / 2 + 3 * i, size / 2 - 2 * i), 4.0 * i,
                                                             1.0 + 0.03 * i), (size, size),
                              borderMode=cv2.BORDER_REFLECT) for i in range(count)]
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div(255.0)  # noqa: E731
    return as_tensor(np.roll(image, (10, -6), axis=(0, 1)))[None], torch.stack([as_tensor(f) for f in driving])


def original_animation(kp_detector, generator, source, driving):
    import torch
    from animate import normalize_kp

    kp_source, kp_initial = kp_detector(source), kp_detector(driving[:1])
    out = []
    for i in range(driving.shape[0]):
        kp_norm = normalize_kp(kp_source=kp_source, kp_driving=kp_detector(driving[i:i + 1]),
                               kp_driving_initial=kp_initial, use_relative_movement=True,
                               use_relative_jacobian=True, adapt_movement_scale=True)
        out.append(generator(source, kp_source=kp_source, kp_driving=kp_norm)["prediction"])
    return torch.cat(out)


def compare(config_path: Path, seed: int, work: Path, shim: dict) -> dict:
    import torch
    import yaml
    from demo import load_checkpoints
    from modules.discriminator import MultiScaleDiscriminator
    from modules.generator import OcclusionAwareGenerator
    from modules.keypoint_detector import KPDetector

    from fomm_core.checkpoint import load_inference_models
    from fomm_core.inference.animate import Animator
    from fomm_core.official import export_checkpoint, import_checkpoint, model_config_from_official

    params = yaml.safe_load(config_path.read_text())["model_params"]
    kp_o = KPDetector(**params["kp_detector_params"], **params["common_params"])
    gen_o = OcclusionAwareGenerator(**params["generator_params"], **params["common_params"])
    disc_o = MultiScaleDiscriminator(**params["discriminator_params"], **params["common_params"])
    gen = torch.Generator().manual_seed(seed)
    for module in (kp_o, gen_o, disc_o):
        randomise(module, gen)
        module.eval()
    name = config_path.stem
    source_file = work / f"{name}-cpk.pth.tar"
    torch.save({"generator": gen_o.state_dict(), "kp_detector": kp_o.state_dict(),
                "discriminator": disc_o.state_dict(), "epoch": 99}, source_file, _use_new_zipfile_serialization=False)
    import_checkpoint(source_file, config_path, work / f"{name}.pt")
    kp_p, gen_p, *_ = load_inference_models(work / f"{name}.pt")
    source, driving = frames()
    result = {}
    ko, kp = kp_o(driving), kp_p(driving)
    result["keypoint_value_max_abs"] = float((ko["value"] - kp["value"]).abs().max())
    result["keypoint_jacobian_max_abs"] = float((ko["jacobian"] - kp["jacobian"]).abs().max())
    theirs = original_animation(kp_o, gen_o, source, driving)
    ours = Animator(kp_p, gen_p, source, relative=True, relative_jacobian=True, adapt_scale=True)(driving)
    diff = (theirs - ours).abs()
    result["frame_max_abs"], result["frame_mean_abs"] = float(diff.max()), float(diff.mean())
    result["frame_std"] = round(float(theirs.std()), 3)  # the frames are not flat
    shim["torch10"] = False
    drift = (original_animation(kp_o, gen_o, source, driving) - theirs).abs()
    shim["torch10"] = True
    result["original_on_current_torch_max_abs"] = round(float(drift.max()), 4)
    result["original_on_current_torch_mean_abs"] = round(float(drift.mean()), 5)

    export_checkpoint(work / f"{name}.pt", work / f"{name}-export.pth.tar", work / f"{name}-export.yaml")
    generator_e, kp_e = load_checkpoints(str(work / f"{name}-export.yaml"), str(work / f"{name}-export.pth.tar"),
                                         cpu=True)  # load_state_dict strict
    exported = {"kp_detector": kp_e.state_dict(), "generator": generator_e.state_dict()}
    original = {"kp_detector": kp_o.state_dict(), "generator": gen_o.state_dict()}
    result["export_tensors_identical"] = all(
        torch.equal(exported[n][k], v) if not k.endswith("down.weight") else torch.allclose(exported[n][k], v, atol=1e-7)
        for n in original for k, v in original[n].items())
    result["export_config_same_model"] = (model_config_from_official(yaml.safe_load(
        (work / f"{name}-export.yaml").read_text())) == model_config_from_official({"model_params": params}))
    import_checkpoint(work / f"{name}-export.pth.tar", work / f"{name}-export.yaml", work / f"{name}-again.pt")
    first = torch.load(work / f"{name}.pt", weights_only=True)
    again = torch.load(work / f"{name}-again.pt", weights_only=True)
    result["reimport_identical"] = all(torch.equal(first[n][k], again[n][k])
                                       for n in ("kp_detector", "generator", "discriminator") for k in first[n])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="config names (default: all in the original config/ folder)")
    parser.add_argument("--original", type=Path, default=os.environ.get("FOMM_ORIGINAL_REPO"),
                        help="checkout of first-order-model (default $FOMM_ORIGINAL_REPO)")
    args = parser.parse_args()
    if not args.original or not (Path(args.original) / "modules" / "keypoint_detector.py").is_file():
        print(json.dumps({"skipped": "set FOMM_ORIGINAL_REPO to a checkout of AliaksandrSiarohin/first-order-model"}))
        return
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_grad_enabled(False)
    shim = install_original(Path(args.original).resolve())
    configs = sorted((Path(args.original) / "config").glob("*.yaml"))
    if args.configs:
        configs = [c for c in configs if c.stem in args.configs]
    results = {"torch": torch.__version__}
    with tempfile.TemporaryDirectory() as work:
        for seed, config in enumerate(configs):
            results[config.stem] = compare(config, seed, Path(work), shim)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
