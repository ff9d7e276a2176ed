"""LSGAN losses and discriminator feature matching (FOMM's vox-adv setting, pix2pixHD style).

The functions take the multi-scale discriminator's output dicts, one entry per scale:
``prediction_map_<scale>`` (a tensor) and ``feature_maps_<scale>`` (a list of tensors, one per
discriminator block). Least-squares targets (real → 1, fake → 0) give smoother gradients than
the log loss; feature matching makes the generator reproduce the discriminator's intermediate
statistics of real frames.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..errors import FommError

PREDICTION = "prediction_map_"
FEATURES = "feature_maps_"


def _scale_keys(outputs: Mapping[str, object], prefix: str, scales: Sequence[str] | None) -> list[str]:
    if scales is not None:
        keys = [f"{prefix}{s}" for s in scales]
    else:
        keys = sorted(k for k in outputs if k.startswith(prefix))
    if not keys:
        raise ValueError(f"discriminator output has no '{prefix}*' entries (keys: {sorted(outputs)})")
    missing = [k for k in keys if k not in outputs]
    if missing:
        raise ValueError(f"discriminator output lacks {missing[0]} (keys: {sorted(outputs)})")
    return keys


def generator_gan_loss(
    disc_fake: Mapping[str, object], weight: float = 1.0, scales: Sequence[str] | None = None
) -> torch.Tensor:
    """sum over scales of ``weight * mean((1 - D(fake))^2)``: the generator wants fakes scored real."""
    keys = _scale_keys(disc_fake, PREDICTION, scales)
    return sum(weight * ((1 - disc_fake[k]) ** 2).mean() for k in keys)  # type: ignore[operator]


def discriminator_gan_loss(
    disc_real: Mapping[str, object],
    disc_fake: Mapping[str, object],
    weight: float = 1.0,
    scales: Sequence[str] | None = None,
) -> torch.Tensor:
    """sum over scales of ``weight * mean((1 - D(real))^2 + D(fake)^2)``.

    The caller runs the discriminator on a *detached* generated frame so this loss only
    trains the discriminator.
    """
    keys = _scale_keys(disc_fake, PREDICTION, scales)
    total = None
    for key in keys:
        if key not in disc_real:
            raise ValueError(f"real discriminator output lacks {key}")
        term = weight * ((1 - disc_real[key]) ** 2 + disc_fake[key] ** 2).mean()  # type: ignore[operator]
        total = term if total is None else total + term
    return total  # type: ignore[return-value]


def feature_matching_loss(
    disc_real: Mapping[str, object],
    disc_fake: Mapping[str, object],
    weights: Sequence[float] = (10.0, 10.0, 10.0, 10.0),
    scales: Sequence[str] | None = None,
) -> torch.Tensor:
    """sum over scales and layers of ``weight_i * mean|f_real - f_fake|`` (real side detached).

    One weight per discriminator block; a mismatch is a config error (``losses.feature_matching``).
    """
    keys = _scale_keys(disc_fake, FEATURES, scales)
    total = None
    for key in keys:
        if key not in disc_real:
            raise ValueError(f"real discriminator output lacks {key}")
        real, fake = disc_real[key], disc_fake[key]
        if len(real) != len(fake):  # type: ignore[arg-type]
            raise ValueError(f"{key}: {len(real)} real vs {len(fake)} fake feature maps")  # type: ignore[arg-type]
        if len(weights) != len(fake):  # type: ignore[arg-type]
            raise FommError(
                f"losses.feature_matching has {len(weights)} weights but the discriminator gives "
                f"{len(fake)} feature maps per scale; give one weight per map"  # type: ignore[arg-type]
            )
        for weight, f_real, f_fake in zip(weights, real, fake):  # type: ignore[call-overload]
            if weight == 0:
                continue
            term = weight * (f_real.detach() - f_fake).abs().mean()
            total = term if total is None else total + term
    if total is None:  # every weight zero
        first = disc_fake[keys[0]][0]  # type: ignore[index]
        return first.new_zeros(())
    return total
