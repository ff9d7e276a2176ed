"""Frozen VGG-19 feature extractor for the perceptual loss (torchvision layout, no torchvision).

The perceptual loss compares activations after the first ReLU of each of the five VGG blocks
(relu1_1 .. relu5_1). Layers are numbered exactly like torchvision's ``vgg19().features`` so the
published ImageNet checkpoint (``features.{i}.weight/bias``) loads unchanged, but the module stops
at relu5_1 (index 29): the last three convs of block 5 would only burn time and memory.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import FommError

# torchvision's configuration "E": channels per conv, "M" = 2x2 max pool.
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Index in ``features`` of the ReLU that ends each output slice.
RELU_INDICES = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu5_1": 29}
LAYER_NAMES = tuple(RELU_INDICES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_feature_shapes() -> dict[str, tuple[int, ...]]:
    """Every ``features.*`` tensor shape of a full torchvision VGG-19 (all 16 convs)."""
    shapes: dict[str, tuple[int, ...]] = {}
    index, in_ch = 0, 3
    for item in _VGG19_LAYOUT:
        if item == "M":
            index += 1
            continue
        shapes[f"features.{index}.weight"] = (item, in_ch, 3, 3)
        shapes[f"features.{index}.bias"] = (item,)
        in_ch = item
        index += 2  # conv + ReLU
    return shapes


def check_vgg19_state_dict(state_dict: Mapping[str, torch.Tensor], where: str = "state dict") -> None:
    """Raise FommError unless ``state_dict`` holds the full torchvision VGG-19 ``features`` part."""
    if not isinstance(state_dict, Mapping):
        raise FommError(f"{where}: expected a torchvision VGG-19 state dict, got {type(state_dict).__name__}")
    expected = vgg19_feature_shapes()
    present = {k for k in state_dict if k.startswith("features.")}
    missing = sorted(set(expected) - present, key=_key_order)
    if missing:
        raise FommError(
            f"{where}: not a torchvision VGG-19 state dict (missing {missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); "
            "use the ImageNet file vgg19-dcbb9e9d.pth"
        )
    unexpected = sorted(present - set(expected), key=_key_order)
    if unexpected:
        raise FommError(f"{where}: unexpected key {unexpected[0]} for VGG-19 features; is this a different VGG?")
    for key, shape in expected.items():
        value = state_dict[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise FommError(f"{where}: {key} has shape {got}, VGG-19 needs {shape}")


def _key_order(key: str) -> tuple[int, str]:
    parts = key.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, key)


class Vgg19Features(nn.Module):
    """relu1_1 .. relu5_1 activations of VGG-19 for images in [0, 1] (normalised inside).

    Always frozen and in eval mode: it is a fixed metric, never trained. ``state_dict=None``
    gives a randomly initialised network seeded by ``seed`` (a reproducible, weaker metric for
    offline runs; the caller must log ``perceptual_backbone: random``).
    """

    def __init__(self, state_dict: Mapping[str, torch.Tensor] | None = None, *, seed: int = 0) -> None:
        super().__init__()
        last = max(RELU_INDICES.values())
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _VGG19_LAYOUT:
            if len(layers) > last:
                break
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = item
        self.features = nn.Sequential(*layers[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if state_dict is None:
            self._init_random(seed)
        else:
            self.load_torchvision_state_dict(state_dict)
        self.requires_grad_(False)
        self.eval()

    def _init_random(self, seed: int) -> None:
        # Kaiming-normal like torchvision's VGG init, from a private generator so the
        # global RNG stream of the training run is untouched.
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.features:
                if isinstance(module, nn.Conv2d):
                    fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                    module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_out) ** 0.5)
                    module.bias.zero_()

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load ``features.*`` from a torchvision VGG-19 state dict; classifier keys are ignored.

        The whole features part is checked (all 16 convs, exact shapes); the convs after
        relu5_1 are then dropped and the rest loaded with ``strict=True``.
        """
        check_vgg19_state_dict(state_dict)
        own = self.state_dict()
        subset = {k: state_dict[k] for k in own}
        self.load_state_dict(subset, strict=True)

    def train(self, mode: bool = True) -> "Vgg19Features":
        # Stay in eval mode whatever the enclosing model does (no dropout/BN here, but a
        # frozen metric must not change behaviour with .train()).
        return super().train(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] → [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]."""
        x = (image - self.mean) / self.std
        outputs = []
        wanted = set(RELU_INDICES.values())
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                outputs.append(x)
        return outputs
