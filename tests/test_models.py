"""The FOMM networks: shapes, coordinate conventions, motion identities, gradients, bf16, memory format.

Tiny configurations keep the whole file fast; the structure (and so every code path) is the
same as the vox-256 model.
"""

import copy

import pytest
import torch
from torch.nn.utils import parametrize

from fomm_core.config import ConfigError, from_mapping, to_mapping
from fomm_core.geometry import keypoints_to_gaussian, make_coordinate_grid
from fomm_core.model_config import (
    DenseMotionConfig,
    DiscriminatorConfig,
    GeneratorConfig,
    KeypointDetectorConfig,
    ModelConfig,
    small_model_config,
)
from fomm_core.models import (
    AntiAliasResize,
    DenseMotionNetwork,
    Hourglass,
    KeypointDetector,
    MultiScaleDiscriminator,
    OcclusionAwareGenerator,
    build_models,
    count_parameters,
)
from fomm_core.models.blocks import gaussian_heatmaps
from fomm_core.models.dense_motion import inverse_2x2, matmul_2x2

NUM_KP = 5


def tiny_config(**overrides) -> ModelConfig:
    """Same structure as vox-256, a few channels wide; works from 64 px up."""
    cfg = ModelConfig(
        num_kp=NUM_KP,
        kp=KeypointDetectorConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.25),
        generator=GeneratorConfig(
            block_expansion=8, max_features=32, num_down_blocks=2, num_bottleneck_blocks=1,
            dense_motion=DenseMotionConfig(block_expansion=8, max_features=32, num_blocks=3, scale_factor=0.25),
        ),
        discriminator=DiscriminatorConfig(scales=[1.0, 0.5], block_expansion=8, max_features=32, num_blocks=3),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def random_kp(batch: int, num_kp: int = NUM_KP, generator=None) -> dict:
    value = torch.rand(batch, num_kp, 2, generator=generator) * 1.6 - 0.8
    jacobian = torch.eye(2) + 0.3 * torch.randn(batch, num_kp, 2, 2, generator=generator)
    return {"value": value, "jacobian": jacobian}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return build_models(tiny_config())


def images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- config


def test_vox256_defaults_are_the_papers():
    cfg = ModelConfig()
    assert (cfg.num_kp, cfg.num_channels, cfg.estimate_jacobian) == (10, 3, True)
    kp = cfg.kp
    assert (kp.temperature, kp.block_expansion, kp.max_features, kp.num_blocks, kp.scale_factor, kp.pad) == (
        0.1, 32, 1024, 5, 0.25, 0,
    )
    gen = cfg.generator
    assert (gen.block_expansion, gen.max_features, gen.num_down_blocks, gen.num_bottleneck_blocks) == (64, 512, 2, 6)
    assert gen.estimate_occlusion_map is True
    dm = gen.dense_motion
    assert (dm.block_expansion, dm.max_features, dm.num_blocks, dm.scale_factor, dm.kp_variance) == (
        64, 1024, 5, 0.25, 0.01,
    )
    disc = cfg.discriminator
    assert (disc.scales, disc.block_expansion, disc.max_features, disc.num_blocks, disc.sn) == ([1.0], 32, 512, 4, True)


def test_vox256_builds_the_published_layer_sizes():
    kp_detector, generator, discriminator = build_models(ModelConfig())
    assert kp_detector.kp.in_channels == 32 + 3 and kp_detector.kp.out_channels == 10
    assert kp_detector.jacobian.out_channels == 40 and kp_detector.kp.padding == (0, 0)
    assert [b.conv.out_channels for b in kp_detector.predictor.down_blocks] == [64, 128, 256, 512, 1024]
    dm = generator.dense_motion
    assert dm.hourglass.down_blocks[0].conv.in_channels == 11 * 4
    assert [b.conv.out_channels for b in dm.hourglass.down_blocks] == [128, 256, 512, 1024, 1024]
    assert dm.mask.out_channels == 11 and dm.occlusion.out_channels == 1
    assert [b.conv.out_channels for b in generator.down_blocks] == [128, 256]
    assert len(generator.bottleneck) == 6 and generator.bottleneck[0].conv1.in_channels == 256
    assert [b.conv.out_channels for b in generator.up_blocks] == [128, 64]
    disc = discriminator.discriminators["1"]
    assert disc.blocks[0].conv.in_channels == 3 + 10
    assert [b.conv.out_channels for b in disc.blocks] == [64, 128, 256, 512]
    # Whole-model parameter counts are reported, not asserted (no published figure to
    # check against); the heads' counts follow directly from the sizes above.
    assert count_parameters(kp_detector.kp) == 35 * 10 * 7 * 7 + 10
    assert count_parameters(kp_detector.jacobian) == 35 * 40 * 7 * 7 + 40
    assert count_parameters(kp_detector) > count_parameters(build_models(small_model_config())[0])


def test_config_loads_nested_mappings_and_round_trips():
    cfg = from_mapping(
        ModelConfig,
        {"num_kp": 15, "kp": {"pad": 3}, "generator": {"dense_motion": {"num_blocks": 3}},
         "discriminator": {"scales": [1, 0.5]}},
        "model",
    )
    assert cfg.num_kp == 15 and cfg.kp.pad == 3 and cfg.generator.dense_motion.num_blocks == 3
    assert cfg.discriminator.scales == [1.0, 0.5] and cfg.generator.block_expansion == 64
    small = small_model_config()
    assert from_mapping(ModelConfig, to_mapping(small), "model") == small


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"kp": {"scale_factor": 0}}, "model.kp: scale_factor must be in (0, 1]"),
        ({"kp": {"pad": 5}}, "model.kp: pad must be between 0 and 3"),
        ({"generator": {"dense_motion": {"blocks": 3}}}, "model.generator.dense_motion.blocks: unknown key"),
        ({"discriminator": {"scales": []}}, "model.discriminator: scales must list at least one scale"),
        ({"discriminator": {"scales": [1, 1]}}, "model.discriminator: scales must be distinct"),
        ({"num_kp": 0}, "model: num_kp must be positive"),
    ],
)
def test_config_errors_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as info:
        from_mapping(ModelConfig, mapping, "model")
    assert message in str(info.value)


# ---------------------------------------------------------------- blocks


def test_anti_alias_resize_removes_aliasing_and_keeps_flat_regions():
    down = AntiAliasResize(1, 0.25)
    checker = (torch.arange(64).view(1, -1) + torch.arange(64).view(-1, 1)) % 2
    small = down(checker.float().view(1, 1, 64, 64))
    assert small.shape == (1, 1, 16, 16)
    interior = small[..., 3:-3, 3:-3]  # away from the zero padding
    # Plain subsampling of a pixel checkerboard gives all 0 or all 1; the blur gives grey.
    assert torch.allclose(interior, torch.full_like(interior, 0.5), atol=0.02)
    flat = down(torch.full((1, 1, 64, 64), 0.7))
    assert torch.allclose(flat[..., 3:-3, 3:-3], torch.tensor(0.7), atol=1e-5)
    x = torch.rand(1, 2, 9, 9)
    assert torch.equal(AntiAliasResize(2, 1.0)(x), x)


def test_anti_alias_resize_keeps_the_coordinate_convention():
    # A smooth ramp equal to the x coordinate must still equal the x coordinate after
    # downscaling: pixel i of the small map sits at the same normalised position.
    ramp = make_coordinate_grid(65, 65)[..., 0].view(1, 1, 65, 65)
    small = AntiAliasResize(1, 0.5)(ramp)
    expected = make_coordinate_grid(*small.shape[2:])[..., 0]
    assert torch.allclose(small[0, 0, 8:-8, 8:-8], expected[8:-8, 8:-8], atol=1e-5)


@pytest.mark.parametrize("scale,size", [(0.25, 64), (0.25, 66), (0.5, 33)])
def test_strided_downsampling_is_the_original_codes(scale, size):
    # The original: zero-padded 2-D Gaussian blur, then every int(1/scale)-th pixel from the first.
    x = torch.rand(2, 3, size, size + 5, generator=torch.Generator().manual_seed(1))
    sigma = (1 / scale - 1) / 2
    k = 2 * round(sigma * 4) + 1
    g = torch.exp(-(torch.arange(k, dtype=torch.float32) - (k - 1) / 2) ** 2 / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :]) / (g[:, None] * g[None, :]).sum()
    blurred = torch.nn.functional.conv2d(x, kernel.expand(3, 1, k, k), padding=k // 2, groups=3)
    step = int(1 / scale)
    down = AntiAliasResize(3, scale, "strided")
    assert torch.allclose(down(x), blurred[..., ::step, ::step], atol=1e-6)
    assert down.output_size(size, size + 5) == tuple(blurred[..., ::step, ::step].shape[2:])
    with pytest.raises(ValueError, match="mode must be"):
        AntiAliasResize(3, scale, "nearest")


def test_fresh_heatmap_grid_stretches_over_the_heatmap():
    detector = KeypointDetector(num_kp=1, block_expansion=4, max_features=8, num_blocks=1, scale_factor=1.0,
                                heatmap_grid="fresh")
    grid = detector.heatmap_grid(20, 20, torch.device("cpu"))
    assert torch.equal(grid, make_coordinate_grid(14, 14))  # the 14x14 heatmap spans [-1, 1] itself
    assert grid[0, 0].tolist() == [-1.0, -1.0] and grid[-1, -1].tolist() == [1.0, 1.0]


def test_single_jacobian_map_is_shared_by_all_keypoints():
    torch.manual_seed(0)
    detector = KeypointDetector(num_kp=3, block_expansion=4, max_features=8, num_blocks=2, scale_factor=0.5,
                                single_jacobian_map=True)
    assert detector.jacobian.out_channels == 4
    with torch.no_grad():
        detector.jacobian.weight.normal_(0, 0.1)
    out = detector(images(2, 32))
    features = detector.predictor(detector.down(images(2, 32)))
    shared = detector.jacobian(features).view(2, 1, 4, *out["heatmap"].shape[2:])
    expected = (out["heatmap"].unsqueeze(2) * shared).sum(dim=(3, 4)).view(2, 3, 2, 2)
    assert torch.allclose(out["jacobian"], expected, atol=1e-6)


@pytest.mark.parametrize("align", [True, False])
def test_flow_resize_convention(align):
    # One down block (features at 1/2) with motion at 1/4: flow and occlusion are resized.
    torch.manual_seed(0)
    generator = OcclusionAwareGenerator(num_kp=2, block_expansion=4, max_features=8, num_down_blocks=1,
                                        num_bottleneck_blocks=1,
                                        dense_motion=DenseMotionConfig(block_expansion=4, max_features=8, num_blocks=2),
                                        flow_resize_align_corners=align)
    features = torch.rand(1, 4, 16, 16)
    flow = make_coordinate_grid(8, 8).unsqueeze(0) * 0.9
    occlusion = torch.rand(1, 1, 8, 8)
    out = generator.deform_features(features, {"deformation": flow, "occlusion_map": occlusion}, {})
    F = torch.nn.functional
    big_flow = F.interpolate(flow.permute(0, 3, 1, 2), size=(16, 16), mode="bilinear", align_corners=align)
    expected = F.grid_sample(features, big_flow.permute(0, 2, 3, 1), align_corners=True)
    expected = expected * F.interpolate(occlusion, size=(16, 16), mode="bilinear", align_corners=align)
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("size", [(16, 16), (22, 30)])
def test_hourglass_output_channels_and_odd_sizes(size):
    hourglass = Hourglass(block_expansion=4, in_features=3, num_blocks=2, max_features=16)
    out = hourglass(torch.rand(2, 3, *size))
    assert out.shape == (2, 4 + 3, *size) and hourglass.out_channels == 7


def test_cached_gaussians_match_geometry():
    kp = random_kp(2)["value"]
    assert torch.allclose(gaussian_heatmaps(kp, 12, 20, 0.01), keypoints_to_gaussian(kp, 12, 20, 0.01), atol=1e-7)


def test_2x2_helpers():
    m = torch.eye(2) + 0.3 * torch.randn(4, 3, 2, 2)
    assert torch.allclose(inverse_2x2(m), torch.linalg.inv(m), atol=1e-5)
    other = torch.randn(4, 3, 2, 2)
    assert torch.allclose(matmul_2x2(m, other), m @ other, atol=1e-6)


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("height, width", [(64, 64), (128, 128), (64, 96)])
def test_output_shapes(models, height, width):
    kp_detector, generator, discriminator = models
    source = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    driving = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    kp_s, kp_d = kp_detector(source), kp_detector(driving)
    mh, mw = height // 4, width // 4  # motion and keypoint maps at scale 0.25
    assert kp_s["value"].shape == (2, NUM_KP, 2)
    assert kp_s["jacobian"].shape == (2, NUM_KP, 2, 2)
    assert kp_s["heatmap"].shape == (2, NUM_KP, mh - 6, mw - 6)  # 7x7 head without padding
    assert torch.allclose(kp_s["heatmap"].sum(dim=(2, 3)), torch.ones(2, NUM_KP), atol=1e-5)

    out = generator(source, kp_d, kp_s)
    assert out["prediction"].shape == (2, 3, height, width)
    assert out["deformed"].shape == (2, 3, height, width)
    assert out["mask"].shape == (2, NUM_KP + 1, mh, mw)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, mh, mw), atol=1e-5)
    assert out["occlusion_map"].shape == (2, 1, mh, mw)
    assert out["sparse_deformed"].shape == (2, NUM_KP + 1, 3, mh, mw)
    assert ((out["prediction"] >= 0) & (out["prediction"] <= 1)).all()
    assert ((out["occlusion_map"] >= 0) & (out["occlusion_map"] <= 1)).all()

    dense = generator.dense_motion(source, kp_d, kp_s)
    assert dense["deformation"].shape == (2, mh, mw, 2)

    result = discriminator(out["prediction"], kp_d)
    assert sorted(result) == ["feature_maps_0.5", "feature_maps_1", "prediction_map_0.5", "prediction_map_1"]
    for scale in ("1", "0.5"):
        maps = result[f"feature_maps_{scale}"]
        assert len(maps) == 3  # one per block
        assert [f.shape[1] for f in maps] == [16, 32, 32]  # min(32, 8 * 2**(i+1))
        assert result[f"prediction_map_{scale}"].shape[:2] == (2, 1)
    assert result["prediction_map_1"].shape[-1] > result["prediction_map_0.5"].shape[-1]


def test_padding_option_and_jacobian_switch():
    torch.manual_seed(0)
    detector = KeypointDetector(num_kp=3, block_expansion=4, max_features=16, num_blocks=2,
                                estimate_jacobian=False, scale_factor=0.5, pad=3)
    out = detector(images(1, 32))
    assert out["heatmap"].shape == (1, 3, 16, 16) and "jacobian" not in out
    generator = OcclusionAwareGenerator(num_kp=3, block_expansion=4, max_features=8, num_down_blocks=1,
                                        num_bottleneck_blocks=1, dense_motion=None)
    assert list(generator(images(1, 32), None, None)) == ["prediction"]


def test_discriminator_without_keypoints_or_spectral_norm():
    disc = MultiScaleDiscriminator(scales=[1], block_expansion=4, max_features=8, num_blocks=2,
                                   sn=False, use_kp=False, num_kp=NUM_KP)
    first = disc.discriminators["1"].blocks[0].conv
    assert first.in_channels == 3 and not parametrize.is_parametrized(first)
    assert len(disc(images(1, 32))["feature_maps_1"]) == 2
    with_sn = MultiScaleDiscriminator(scales=[1], block_expansion=4, max_features=8, num_blocks=2, num_kp=NUM_KP)
    assert parametrize.is_parametrized(with_sn.discriminators["1"].blocks[0].conv, "weight")
    assert parametrize.is_parametrized(with_sn.discriminators["1"].conv, "weight")


# ---------------------------------------------------------------- keypoints


def test_keypoints_in_range_and_jacobian_identity_at_init(models):
    kp_detector = models[0]
    # Extreme inputs too: the softmax expectation must stay inside the image.
    batch = torch.cat([images(2, 64), torch.zeros(1, 3, 64, 64), 100 * images(1, 64, 5)])
    out = kp_detector(batch)
    assert out["value"].abs().max() <= 1.0
    eye = torch.eye(2).expand(4, NUM_KP, 2, 2)
    assert torch.allclose(out["jacobian"], eye, atol=1e-6)


@pytest.mark.parametrize("pad", [0, 2, 3])
def test_heatmap_pixels_keep_their_input_coordinates(pad):
    # A head without padding sees the input map shrunk by 3 - pad pixels per side; its
    # pixel (i, j) is input pixel (i + 3 - pad, j + 3 - pad) and must carry that coordinate.
    detector = KeypointDetector(num_kp=1, block_expansion=4, max_features=8, num_blocks=1, scale_factor=1.0, pad=pad)
    grid = detector.heatmap_grid(20, 20, torch.device("cpu"))
    full = make_coordinate_grid(20, 20)
    crop = 3 - pad
    assert grid.shape == (20 - 2 * crop, 20 - 2 * crop, 2)
    assert torch.equal(grid[0, 0], full[crop, crop]) and torch.equal(grid[-1, -1], full[-1 - crop, -1 - crop])


# ---------------------------------------------------------------- motion


def test_same_keypoints_give_identity_motion(models):
    generator = models[1]
    dense = generator.dense_motion
    source = images(2, 64)
    kp = random_kp(2, generator=torch.Generator().manual_seed(3))
    out = dense(source, kp, {k: v.clone() for k, v in kp.items()})
    m = 16
    identity = make_coordinate_grid(m, m).expand(2, m, m, 2)
    motions = dense.sparse_motions(kp, kp, m, m)
    for k in range(NUM_KP + 1):
        assert torch.allclose(motions[:, k], identity, atol=1e-5)
    assert torch.allclose(out["deformation"], identity, atol=1e-5)  # whatever the mask
    small_source = dense.down(source)
    for k in range(NUM_KP + 1):
        assert torch.allclose(out["sparse_deformed"][:, k], small_source, atol=1e-5)
    gen_out = generator(source, kp, kp)
    assert torch.allclose(gen_out["deformed"], source, atol=1e-5)


def test_sparse_motion_follows_translation_and_jacobians():
    dense = DenseMotionNetwork(block_expansion=4, num_blocks=1, max_features=8, num_kp=2, scale_factor=1.0)
    kp_s = {"value": torch.tensor([[[0.1, -0.2], [0.5, 0.5]]]), "jacobian": torch.eye(2).repeat(1, 2, 1, 1)}
    shift = torch.tensor([0.3, 0.1])
    kp_d = {"value": kp_s["value"] + shift, "jacobian": torch.eye(2).repeat(1, 2, 1, 1)}
    grid = make_coordinate_grid(9, 11)
    motions = dense.sparse_motions(kp_d, kp_s, 9, 11)
    # Driving point z comes from source point z - shift (backward warp).
    assert torch.allclose(motions[0, 1], grid - shift, atol=1e-6)
    assert torch.allclose(motions[0, 0], grid)  # background
    # Source twice as large around the keypoint: kp_s + 2 (z - kp_d).
    kp_s2 = {"value": kp_s["value"], "jacobian": 2 * torch.eye(2).repeat(1, 2, 1, 1)}
    motions = dense.sparse_motions(kp_d, kp_s2, 9, 11)
    expected = kp_s["value"][0, 1] + 2 * (grid - kp_d["value"][0, 1])
    assert torch.allclose(motions[0, 2], expected, atol=1e-6)


def test_generator_ignores_where_equal_keypoints_are(models):
    # With kp_driving == kp_source the heatmap difference is zero and every candidate
    # motion is the identity, so nothing the networks see depends on the keypoints.
    generator = models[1]
    source = images(2, 64, 7)
    kp_a = random_kp(2, generator=torch.Generator().manual_seed(1))
    kp_b = random_kp(2, generator=torch.Generator().manual_seed(2))
    out_a = generator(source, kp_a, kp_a)
    out_b = generator(source, kp_b, kp_b)
    assert torch.allclose(out_a["prediction"], out_b["prediction"], atol=1e-5)
    assert torch.allclose(out_a["occlusion_map"], out_b["occlusion_map"], atol=1e-5)


# ---------------------------------------------------------------- training behaviour


def _missing_or_bad_grads(module):
    return [n for n, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    kp_detector, generator, discriminator = build_models(tiny_config())
    source, driving = images(2, 64, 0), images(2, 64, 1)
    kp_s, kp_d = kp_detector(source), kp_detector(driving)
    out = generator(source, kp_d, kp_s)
    disc = discriminator(out["prediction"], kp_d)
    loss = (out["prediction"] - driving).abs().mean() + sum(
        v.mean() for k, v in disc.items() if k.startswith("prediction_map")
    )
    loss.backward()
    # The reconstruction alone must train the keypoints (no keypoint loss here): this is
    # the unsupervised signal of the whole method. 'deformed' is for display, no grad.
    for module in (kp_detector, generator, discriminator):
        assert _missing_or_bad_grads(module) == []
    assert kp_detector.kp.weight.grad.abs().sum() > 0
    assert kp_detector.jacobian.weight.grad.abs().sum() > 0
    assert generator.dense_motion.mask.weight.grad.abs().sum() > 0
    assert not out["deformed"].requires_grad


def test_bf16_autocast_forward_and_backward(models):
    kp_detector, generator, discriminator = copy.deepcopy(models)
    source, driving = images(2, 64, 0), images(2, 64, 1)
    with torch.no_grad():
        reference_kp = kp_detector(source)
        reference = generator(source, kp_detector(driving), reference_kp)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kp_s, kp_d = kp_detector(source), kp_detector(driving)
        out = generator(source, kp_d, kp_s)
        disc = discriminator(out["prediction"], kp_d)
        loss = out["prediction"].float().mean() + disc["prediction_map_1"].float().mean()
    # Geometry stays float32 under autocast; only the image path runs in bf16.
    assert kp_s["value"].dtype == torch.float32 and out["mask"].dtype == torch.float32
    assert out["prediction"].dtype == torch.bfloat16
    for value in [kp_s["value"], kp_s["jacobian"], out["prediction"], out["occlusion_map"], disc["prediction_map_1"]]:
        assert torch.isfinite(value.float()).all()
    # bf16 keeps ~3 significant digits: close to float32 on average, not bit-exact.
    assert (out["prediction"].float() - reference["prediction"]).abs().mean() < 0.02
    assert (kp_s["value"] - reference_kp["value"]).abs().max() < 0.05
    loss.backward()
    assert _missing_or_bad_grads(generator) == []


def test_channels_last_matches_contiguous(models):
    source, driving = images(2, 64, 0), images(2, 64, 1)

    def run(nets, memory_format):
        kp_detector, generator, discriminator = (n.to(memory_format=memory_format) for n in nets)
        src, drv = source.contiguous(memory_format=memory_format), driving.contiguous(memory_format=memory_format)
        with torch.no_grad():
            kp_s, kp_d = kp_detector(src), kp_detector(drv)
            out = generator(src, kp_d, kp_s)
            disc = discriminator(out["prediction"], kp_d)
        return kp_s, out, disc

    # Copies, so BatchNorm running stats and spectral-norm vectors start equal (train mode).
    kp_a, out_a, disc_a = run(copy.deepcopy(models), torch.contiguous_format)
    kp_b, out_b, disc_b = run(copy.deepcopy(models), torch.channels_last)
    assert torch.allclose(kp_a["value"], kp_b["value"], atol=1e-5)
    assert torch.allclose(kp_a["jacobian"], kp_b["jacobian"], atol=1e-5)
    for key in ("prediction", "mask", "occlusion_map"):
        assert torch.allclose(out_a[key], out_b[key], atol=1e-5), key
    # Sampling a noise image amplifies 1e-6 differences in the flow by its pixel gradients.
    assert torch.allclose(out_a["deformed"], out_b["deformed"], atol=1e-4)
    assert torch.allclose(disc_a["prediction_map_0.5"], disc_b["prediction_map_0.5"], atol=1e-5)


def test_grids_first_built_under_inference_mode_still_train(models):
    # The grid cache must not hand an inference tensor to a later training step.
    kp_detector, generator, _ = copy.deepcopy(models)
    source = images(1, 80, 3)  # a size no other test uses, so the cache is cold
    with torch.inference_mode():
        generator(source, kp_detector(source), kp_detector(source))
    kp = kp_detector(source)
    generator(source, kp, kp_detector(images(1, 80, 4)))["prediction"].mean().backward()
    assert kp_detector.kp.weight.grad is not None
