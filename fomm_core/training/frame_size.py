"""The smallest square frame a model and its losses can train on, from their configs.

Every part shrinks the frame before it convolves: the keypoint detector and the dense
motion network resize by their ``scale_factor`` and then halve ``num_blocks`` times in
their hourglass (a 2x2 average pool of a 1-pixel map is empty), the detector's 7x7 heads
lose ``3 - pad`` pixels per side, the generator halves ``num_down_blocks`` times, each
discriminator block is a valid 4x4 conv followed by a 2x2 pool, and VGG-19 needs 16 px up
to relu5_1 at the smallest pyramid scale. The shape arithmetic below mirrors those modules
so a too-small ``train.frame_size`` is one line before training instead of a convolution
error in the first step.
"""

from __future__ import annotations

from typing import Callable

from ..errors import FommError
from ..losses import ImagePyramid, LossConfig
from ..losses.perceptual import MIN_VGG_SIZE
from ..model_config import ModelConfig
from ..models.keypoint_detector import HEAD_KERNEL

LARGEST_CHECKED = 8192


def _resized(size: int, scale: float) -> int:
    """``AntiAliasResize.output_size``: the map an anti-aliased ``scale`` resize produces."""
    return size if scale == 1 else int(size * scale)


def _halvings_fit(size: int, times: int) -> bool:
    """Whether ``times`` 2x2 average pools leave at least one pixel."""
    return size >= 2**times


def _keypoint_detector_fits(model: ModelConfig, size: int) -> bool:
    small = _resized(size, model.kp.scale_factor)
    return _halvings_fit(small, model.kp.num_blocks) and small + 2 * model.kp.pad - (HEAD_KERNEL - 1) >= 1


def _dense_motion_fits(model: ModelConfig, size: int) -> bool:
    motion = model.generator.dense_motion
    return _halvings_fit(_resized(size, motion.scale_factor), motion.num_blocks)


def _generator_fits(model: ModelConfig, size: int) -> bool:
    return _halvings_fit(size, model.generator.num_down_blocks)


def _discriminator_fits(model: ModelConfig, size: int) -> bool:
    disc = model.discriminator
    for scale in disc.scales:
        side = _resized(size, scale)
        for block in range(disc.num_blocks):
            side -= 3  # 4x4 conv, no padding
            normed, pooled = block != 0, block != disc.num_blocks - 1
            if side < (2 if normed or pooled else 1):  # instance norm needs 2+ pixels, a 2x2 pool too
                return False
            if pooled:
                side //= 2
    return True


def _perceptual_fits(losses: LossConfig, size: int) -> bool:
    return all(min(level.output_size(size, size)) >= MIN_VGG_SIZE for level in ImagePyramid(losses.scales).levels)


def minimum_frame_sizes(model: ModelConfig, losses: LossConfig) -> dict[str, int]:
    """``{part: smallest frame size it accepts}`` for the parts this config trains."""
    parts: dict[str, Callable[[int], bool]] = {
        f"the keypoint detector (scale_factor {model.kp.scale_factor}, {model.kp.num_blocks} hourglass blocks)":
            lambda s: _keypoint_detector_fits(model, s),
        (f"the dense motion network (scale_factor {model.generator.dense_motion.scale_factor}, "
         f"{model.generator.dense_motion.num_blocks} hourglass blocks)"): lambda s: _dense_motion_fits(model, s),
        f"the generator ({model.generator.num_down_blocks} down blocks)": lambda s: _generator_fits(model, s),
    }
    if losses.generator_gan != 0:
        parts[f"the discriminator ({model.discriminator.num_blocks} blocks at scales {model.discriminator.scales})"] = \
            lambda s: _discriminator_fits(model, s)
    if any(losses.perceptual):
        parts[f"the perceptual loss (VGG-19 at pyramid scale {min(losses.scales)})"] = \
            lambda s: _perceptual_fits(losses, s)
    return {name: next((s for s in range(1, LARGEST_CHECKED + 1) if fits(s)), LARGEST_CHECKED + 1)
            for name, fits in parts.items()}


def check_frame_size(frame_size: int, model: ModelConfig, losses: LossConfig) -> None:
    """Raise a one-line FommError when ``frame_size`` is below what some part needs."""
    sizes = minimum_frame_sizes(model, losses)
    part, needed = max(sizes.items(), key=lambda item: item[1])
    if frame_size < needed:
        raise FommError(f"train.frame_size {frame_size} is too small: {part} needs frames of at least {needed} px; "
                        f"raise train.frame_size to {needed} or more, or make the model shallower")
