"""FOMM losses: VGG-19 backbone, perceptual pyramid, equivariance transforms, GAN terms, config.

Images are tiny (32-48 px) and the VGG is randomly initialised (seeded) so the file stays fast;
weight loading itself is covered by test_weights.py.
"""

from __future__ import annotations

import pytest
import torch

from fomm_core.config import ConfigError, from_mapping
from fomm_core.errors import FommError
from fomm_core.geometry import keypoints_to_gaussian, make_coordinate_grid
from fomm_core.losses import (
    LossConfig,
    PerceptualPyramidLoss,
    RandomTransform,
    Vgg19Features,
    build_perceptual_loss,
    discriminator_gan_loss,
    equivariance_losses,
    feature_matching_loss,
    generator_gan_loss,
    random_transform,
)
from fomm_core.losses.perceptual import AntiAliasDownsample
from fomm_core.losses.vgg import IMAGENET_MEAN, vgg19_feature_shapes


@pytest.fixture(scope="module")
def vgg():
    return Vgg19Features(seed=0)


def _images(seed: int, batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- VGG-19

def test_vgg_layout_matches_torchvision_and_stops_at_relu5_1(vgg):
    full = vgg19_feature_shapes()
    own = vgg.state_dict()
    assert set(own) < set(full) and len(full) == 32  # 16 convs in torchvision's features
    assert {k: tuple(v.shape) for k, v in own.items()} == {k: full[k] for k in own}
    assert len(vgg.features) == 30  # indices 0..29, relu5_1 last
    feats = vgg(_images(0, batch=1))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    assert all((f >= 0).all() for f in feats)  # post-ReLU


def test_vgg_is_frozen_and_stays_in_eval(vgg):
    assert not any(p.requires_grad for p in vgg.parameters())
    holder = torch.nn.Sequential(vgg)
    holder.train()
    assert not vgg.training


def test_random_vgg_is_seeded(vgg):
    same, other = Vgg19Features(seed=0), Vgg19Features(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(vgg.state_dict().values(), same.state_dict().values()))
    assert not torch.equal(vgg.features[0].weight, other.features[0].weight)


def _torchvision_state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=gen) * 0.01 for k, s in vgg19_feature_shapes().items()}
    state["classifier.0.weight"] = torch.zeros(7, 5)  # classifier keys are ignored
    return state


def test_torchvision_state_dict_loads_and_is_validated():
    state = _torchvision_state(1)
    vgg = Vgg19Features(state)
    for key, value in vgg.state_dict().items():
        assert torch.equal(value, state[key])
    missing = dict(state)
    del missing["features.34.weight"]  # a layer we never run must still be there
    with pytest.raises(FommError, match="features.34.weight"):
        Vgg19Features(missing)
    wrong = dict(state, **{"features.2.weight": torch.zeros(64, 64, 1, 1)})
    with pytest.raises(FommError, match="features.2.weight"):
        Vgg19Features(wrong)
    extra = dict(state, **{"features.37.weight": torch.zeros(1)})
    with pytest.raises(FommError, match="features.37.weight"):
        Vgg19Features(extra)


def test_imagenet_normalisation_is_inside():
    state = _torchvision_state(2)
    state["features.0.bias"] = torch.linspace(-1, 1, 64)
    vgg = Vgg19Features(state)
    image = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    relu1_1 = vgg(image)[0]
    # the mean image normalises to 0, so relu1_1 is relu(bias) everywhere (interior and border)
    expected = torch.relu(state["features.0.bias"]).view(1, 64, 1, 1).expand_as(relu1_1)
    assert torch.allclose(relu1_1, expected, atol=1e-6)


# --------------------------------------------------------------------------- pyramid

def test_antialias_downsample_keeps_constants_and_reduces_aliasing():
    down = AntiAliasDownsample(0.5)
    flat = torch.full((1, 3, 20, 20), 0.3)
    assert torch.allclose(down(flat), flat[:, :, :10, :10], atol=1e-6)
    checker = ((torch.arange(20).view(-1, 1) + torch.arange(20).view(1, -1)) % 2).float().expand(1, 3, 20, 20)
    small = down(checker)
    assert small.shape == (1, 3, 10, 10)
    # plain subsampling gives all zeros (aliasing amplitude 0.5); the blur pulls it towards the mean 0.5
    assert (small[..., 1:-1, 1:-1] - 0.5).abs().max() < 0.2
    odd = AntiAliasDownsample(0.75)(torch.rand(1, 3, 20, 16))
    assert odd.shape == (1, 3, 15, 12)
    quarter = AntiAliasDownsample(0.25)
    assert quarter.output_size(33, 17) == tuple(quarter(torch.rand(1, 3, 33, 17)).shape[2:])


# --------------------------------------------------------------------------- perceptual

def test_perceptual_loss_matches_definition_scales_and_symmetry(vgg):
    a, b = _images(3, batch=1), _images(4, batch=1)
    weights = [1, 2, 3, 4, 5]
    two = PerceptualPyramidLoss(vgg, scales=[1.0, 0.5], layer_weights=weights)
    per_scale = two.per_scale(a, b)
    assert len(per_scale) == 2 and all(v.item() > 0 for v in per_scale)
    by_hand = sum(w * (fa - fb).abs().mean() for w, fa, fb in zip(weights, vgg(a), vgg(b)))
    assert per_scale[0].item() == pytest.approx(by_hand.item(), rel=1e-5)
    half = PerceptualPyramidLoss(vgg, scales=[0.5], layer_weights=weights)
    assert per_scale[1].item() == pytest.approx(half(b, a).item(), rel=1e-5)  # symmetric
    scaled = PerceptualPyramidLoss(vgg, scales=[0.5], layer_weights=[10 * w for w in weights])
    assert scaled(a, b).item() == pytest.approx(10 * per_scale[1].item(), rel=1e-5)
    assert two(a, a.clone()).item() == pytest.approx(0.0, abs=1e-7)


def test_perceptual_gradients_reach_prediction_only(vgg):
    loss = PerceptualPyramidLoss(vgg, scales=[1, 0.5])
    pred = _images(5).requires_grad_(True)
    target = _images(6).requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(p.grad is None for p in vgg.parameters())
    # the no-graph path (one batched VGG call) gives the same number
    with torch.no_grad():
        assert loss(pred, target).item() == pytest.approx(value.item(), rel=1e-5)


def test_perceptual_rejects_images_too_small_for_a_scale(vgg):
    loss = PerceptualPyramidLoss(vgg)  # default scales down to 1/8
    with pytest.raises(ValueError, match="scale 0.25 turns 32x32 images into 8x8"):
        loss(_images(0), _images(1))


def test_build_perceptual_loss_offline_records_random_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    config = from_mapping(LossConfig, {"perceptual_backbone": "random", "allow_download": False,
                                       "scales": [1, 0.5], "random_backbone_seed": 7}, "losses")
    loss, info = build_perceptual_loss(config)
    assert info.log_params()["perceptual_backbone"] == "random"
    assert torch.equal(loss.vgg.features[0].weight, Vgg19Features(seed=7).features[0].weight)
    assert loss(_images(1), _images(2)).item() > 0
    strict = from_mapping(LossConfig, {"allow_download": False}, "losses")
    with pytest.raises(FommError, match="perceptual_backbone: random"):
        build_perceptual_loss(strict)


# --------------------------------------------------------------------------- equivariance

def _blob_image(centres: torch.Tensor, size: int, variance: float = 0.004) -> torch.Tensor:
    """(B, 1, size, size) Gaussian blobs at (B, 2) centres in [-1, 1]."""
    return keypoints_to_gaussian(centres.unsqueeze(1), size, size, variance)


def _centroid_detector(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Intensity-weighted centroid: equivariant to warps that are affine near the blob."""
    b, _, h, w = image.shape
    weights = image.sum(1).view(b, -1)
    grid = make_coordinate_grid(h, w).view(1, -1, 2)
    value = (weights.unsqueeze(-1) * grid).sum(1) / weights.sum(1, keepdim=True)
    return {"value": value.unsqueeze(1), "jacobian": torch.eye(2).expand(b, 1, 2, 2)}


def test_identity_transform_gives_zero_loss():
    transform = RandomTransform(2, sigma_affine=0.0, sigma_tps=0.0)
    image = _blob_image(torch.tensor([[0.2, -0.3], [-0.4, 0.1]]), 40)
    assert torch.allclose(transform.transform_frame(image), image, atol=1e-6)
    losses = equivariance_losses(_centroid_detector(image), _centroid_detector(transform.transform_frame(image)),
                                 transform, (10, 10))
    assert set(losses) == {"equivariance_value", "equivariance_jacobian"}
    assert losses["equivariance_value"].item() < 1e-5 and losses["equivariance_jacobian"].item() < 1e-5


def test_equivariant_detector_under_random_affine_has_small_value_loss():
    gen = torch.Generator().manual_seed(0)
    transform = RandomTransform(4, sigma_affine=0.1, sigma_tps=0.0, generator=gen)
    centres = torch.tensor([[0.1, 0.2], [-0.2, 0.0], [0.0, -0.15], [0.25, 0.1]])
    image = _blob_image(centres, 48)
    driving, transformed = _centroid_detector(image), _centroid_detector(transform.transform_frame(image))
    loss = equivariance_losses(driving, transformed, transform, (1, 0))
    assert set(loss) == {"equivariance_value"}
    unmapped = (driving["value"] - transformed["value"]).abs().mean()
    assert unmapped > 0.02  # the transform really moved the blobs...
    assert loss["equivariance_value"] < 0.1 * unmapped  # ...and mapping back undoes it


def test_transform_points_agrees_with_transform_frame_within_a_pixel():
    size = 48
    gen = torch.Generator().manual_seed(1)
    transform = RandomTransform(3, sigma_affine=0.1, sigma_tps=0.02, generator=gen)
    centres = torch.tensor([[0.0, 0.0], [0.3, -0.2], [-0.25, 0.3]])
    warped = transform.transform_frame(_blob_image(centres, size, variance=0.002))
    found = _centroid_detector(warped)["value"]  # blob position in the warped frame
    back = transform.transform_points(found)[:, 0]
    pixel = 2.0 / (size - 1)
    assert (back - centres).abs().max() < pixel
    assert (found[:, 0] - centres).abs().max() > pixel  # not trivially unmoved


def test_jacobian_of_affine_is_its_matrix_and_tps_matches_finite_differences():
    gen = torch.Generator().manual_seed(2)
    affine = RandomTransform(2, sigma_affine=0.2, sigma_tps=0.0, generator=gen)
    points = torch.rand(2, 5, 2, generator=gen) * 2 - 1
    jac = affine.jacobian(points)
    assert jac.shape == (2, 5, 2, 2)
    assert torch.allclose(jac, affine.theta[:, :, :2].unsqueeze(1).expand(2, 5, 2, 2), atol=1e-6)

    tps = RandomTransform(2, sigma_affine=0.1, sigma_tps=0.05, generator=gen, dtype=torch.float64)
    points = points.double()
    jac = tps.jacobian(points)
    eps = 1e-6
    for j in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[j] = eps
        numeric = (tps.transform_points(points + step) - tps.transform_points(points - step)) / (2 * eps)
        assert torch.allclose(jac[..., :, j], numeric, atol=1e-6)
    assert not torch.allclose(jac[:, 0], jac[:, 1])  # TPS jacobian varies with position
    # differentiable in the points (the jacobian loss trains keypoint positions too), agreeing with autograd
    tracked = points.clone().requires_grad_(True)
    grad = torch.autograd.grad(tps.jacobian(tracked)[..., 0, 1].sum(), tracked)[0]
    assert grad.abs().sum() > 0
    rows = [torch.autograd.grad(tps.transform_points(tracked)[..., i].sum(), tracked, create_graph=True)[0]
            for i in range(2)]
    assert torch.allclose(torch.stack(rows, dim=-2), tps.jacobian(tracked), atol=1e-10)


def test_jacobian_term_zero_when_jacobians_compose_and_trains_keypoints():
    gen = torch.Generator().manual_seed(3)
    transform = RandomTransform(2, sigma_affine=0.1, sigma_tps=0.05, generator=gen)
    kp_t = (torch.rand(2, 4, 2, generator=gen) * 1.6 - 0.8).requires_grad_(True)
    jac_driving = torch.eye(2) + 0.2 * torch.randn(2, 4, 2, 2, generator=gen)
    jac_t = transform.jacobian(kp_t.detach())
    consistent = torch.linalg.solve(jac_t, jac_driving)  # J_T @ J_transformed == J_driving
    driving = {"value": transform.transform_points(kp_t.detach()), "jacobian": jac_driving}
    good = equivariance_losses(driving, {"value": kp_t, "jacobian": consistent}, transform, (10, 10))
    assert good["equivariance_value"].item() < 1e-5 and good["equivariance_jacobian"].item() < 1e-4
    bad = equivariance_losses(driving, {"value": kp_t, "jacobian": consistent + 0.1}, transform, (10, 10))
    assert bad["equivariance_jacobian"].item() > 0.1
    bad["equivariance_jacobian"].backward()
    assert kp_t.grad is not None and kp_t.grad.abs().sum() > 0  # through J_T(kp) (create_graph)


def test_random_transform_is_reproducible_and_configurable():
    config = from_mapping(LossConfig, {"sigma_affine": 0.1, "points_tps": 3}, "losses")
    a = random_transform(config, 2, torch.Generator().manual_seed(5))
    b = random_transform(config, 2, torch.Generator().manual_seed(5))
    c = random_transform(config, 2, torch.Generator().manual_seed(6))
    points = torch.rand(2, 7, 2)
    assert torch.equal(a.transform_points(points), b.transform_points(points))
    assert not torch.allclose(a.transform_points(points), c.transform_points(points))
    assert a.control_points.shape == (9, 2)


# --------------------------------------------------------------------------- GAN

def _disc_output(seed: int, scales=("1", "0.5"), value: float | None = None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for s in scales:
        out[f"feature_maps_{s}"] = [torch.randn(2, c, 8, 8, generator=gen) for c in (4, 8, 16, 32)]
        pred = torch.rand(2, 1, 8, 8, generator=gen)
        out[f"prediction_map_{s}"] = torch.full_like(pred, value) if value is not None else pred
    return out


def test_lsgan_losses_targets_and_gradient_directions():
    real_ok, fake_ok = _disc_output(0, value=1.0), _disc_output(1, value=0.0)
    assert discriminator_gan_loss(real_ok, fake_ok).item() == 0.0
    assert generator_gan_loss(real_ok, weight=3.0).item() == 0.0  # fakes already scored real
    assert generator_gan_loss(fake_ok, weight=1.0).item() == pytest.approx(2.0)  # (1-0)^2 at 2 scales
    fake = _disc_output(2)
    assert generator_gan_loss(fake, weight=2.0).item() == pytest.approx(2 * generator_gan_loss(fake).item())
    assert generator_gan_loss(fake, scales=["1"]).item() < generator_gan_loss(fake).item()

    real = {k: (v.clone().requires_grad_(True) if k.startswith("prediction") else v) for k, v in _disc_output(3).items()}
    fake = {k: (v.clone().requires_grad_(True) if k.startswith("prediction") else v) for k, v in _disc_output(4).items()}
    discriminator_gan_loss(real, fake).backward()
    # descending the loss raises D(real) towards 1 and lowers D(fake) towards 0
    assert (real["prediction_map_1"].grad < 0).all() and (fake["prediction_map_1"].grad > 0).all()


def test_feature_matching():
    real = _disc_output(0)
    fake = {k: [f.clone().requires_grad_(True) for f in v] if k.startswith("feature") else v
            for k, v in _disc_output(1).items()}
    real_tracked = {k: [f.clone().requires_grad_(True) for f in v] if k.startswith("feature") else v
                    for k, v in real.items()}
    assert feature_matching_loss(real, real).item() == 0.0
    loss = feature_matching_loss(real_tracked, fake, weights=[1, 0, 0, 0])
    expected = sum((real[f"feature_maps_{s}"][0] - fake[f"feature_maps_{s}"][0]).abs().mean() for s in ("1", "0.5"))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert fake["feature_maps_1"][0].grad is not None and fake["feature_maps_1"][1].grad is None
    assert real_tracked["feature_maps_1"][0].grad is None  # the real side is a fixed target
    assert feature_matching_loss(real, fake, weights=[0, 0, 0, 0]).item() == 0.0
    with pytest.raises(FommError, match="feature_matching has 3 weights"):
        feature_matching_loss(real, fake, weights=[10, 10, 10])
    with pytest.raises(ValueError, match="feature_maps_2"):
        feature_matching_loss(real, fake, scales=["2"])


# --------------------------------------------------------------------------- config

def test_loss_config_defaults_and_errors():
    config = from_mapping(LossConfig, None, "losses")
    assert config.perceptual == [10.0] * 5 and config.feature_matching == [10.0] * 4
    assert config.scales == [1.0, 0.5, 0.25, 0.125] and config.generator_gan == 0.0
    assert (config.sigma_affine, config.sigma_tps, config.points_tps) == (0.05, 0.005, 5)
    assert config.perceptual_backbone == "pretrained" and config.vgg_weights == ""
    adv = from_mapping(LossConfig, {"generator_gan": 1, "perceptual": [1, 2, 3, 4, 5]}, "losses")
    assert adv.generator_gan == 1.0 and adv.perceptual == [1.0, 2.0, 3.0, 4.0, 5.0]
    bad = [
        ({"perceptual": [10, 10]}, "losses: perceptual: need 5 weights"),
        ({"perceptual_backbone": "imagenet"}, "losses.perceptual_backbone: expected one of"),
        ({"scales": [1, 0]}, "scales"),
        ({"sigma_tps": -0.1}, "sigma_tps"),
        ({"allow_download": "yes"}, "losses.allow_download: expected true or false"),
        ({"vgg_weights_sha256": "xyz"}, "vgg_weights_sha256"),
        ({"perceptual_weight": 1}, "losses.perceptual_weight: unknown key"),
    ]
    for mapping, message in bad:
        with pytest.raises(ConfigError, match=message):
            from_mapping(LossConfig, mapping, "losses")
