"""When a checkpoint is continued (run identity, world size), loss-curve files across a resume,
and the smallest frame size a config can train on. No training here: these are the decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _train_helpers import tiny_losses, tiny_model, tiny_train
from fomm_core.curves import LossCurve
from fomm_core.errors import FommError
from fomm_core.losses import LossConfig, build_perceptual_loss, random_transform
from fomm_core.model_config import small_model_config
from fomm_core.models import build_models
from fomm_core.training.frame_size import check_frame_size, minimum_frame_sizes
from fomm_core.training.full_model import DiscriminatorFullModel, GeneratorFullModel
from fomm_core.training.resume import decide, run_identity

PATH = Path("out/checkpoint.pt")


def identity(**train):
    return run_identity(tiny_model(), tiny_losses(), tiny_train(**train), "shards-a", "code-a")


def checkpoint(world_size: int = 1, step: int = 4, **train) -> dict:
    return {"run_identity": identity(**train), "world_size": world_size, "step": step, "epoch": 2}


def test_a_matching_checkpoint_is_continued_also_when_only_the_run_length_changed():
    decision = decide(checkpoint(), PATH, identity(epochs=10, max_steps=40, log_every=7, num_workers=3), 1, 40, "auto")
    assert decision.resume and decision.note == "resuming from out/checkpoint.pt at epoch 2, step 4"
    assert decide(checkpoint(), PATH, identity(), 1, 6, "require").resume


@pytest.mark.parametrize("change, named", [
    (dict(train=dict(lr_generator=1e-3)), "another train.lr_generator"),
    (dict(train=dict(accumulate_steps=2)), "another train.accumulate_steps"),
    (dict(shards="shards-b"), "other shards"),
    (dict(code="code-b"), "other training code"),
])
def test_a_checkpoint_of_other_settings_data_or_code_starts_fresh_and_says_why(change, named):
    current = run_identity(tiny_model(), tiny_losses(), tiny_train(**change.get("train", {})),
                           change.get("shards", "shards-a"), change.get("code", "code-a"))
    decision = decide(checkpoint(), PATH, current, 1, 6, "auto")
    assert not decision.resume
    assert decision.note == f"out/checkpoint.pt was trained with {named}; starting from scratch"
    if "code" in change:  # an explicit --resume may cross a code change, and says so
        forced = decide(checkpoint(), PATH, current, 1, 6, "require")
        assert forced.resume and "training code changed" in forced.note
    else:
        with pytest.raises(FommError, match=f"trained with {named}; cannot --resume it"):
            decide(checkpoint(), PATH, current, 1, 6, "require")


def test_another_world_size_is_refused_in_one_line():
    for mode in ("auto", "require"):
        with pytest.raises(FommError) as error:
            decide(checkpoint(world_size=2), PATH, identity(), 1, 6, mode)
        message = str(error.value)
        assert "\n" not in message and "trained by 2 process(es), this run has 1" in message
        assert "train.nproc_per_node" in message and "--fresh" in message
    assert not decide(checkpoint(world_size=2), PATH, identity(), 1, 6, "never").resume


def test_no_checkpoint_a_checkpoint_past_the_target_and_fresh():
    assert decide(None, PATH, identity(), 1, 6, "auto").note == "no checkpoint at out/checkpoint.pt; starting from scratch"
    assert not decide(None, PATH, identity(), 1, 6, "require").resume
    past = decide(checkpoint(step=8), PATH, identity(), 1, 6, "auto")  # train.epochs lowered: not what a fresh run gives
    assert not past.resume and "past this run's 6 steps" in past.note
    assert not decide(checkpoint(), PATH, identity(), 1, 6, "never").resume
    older = decide({"step": 3, "world_size": 1}, PATH, identity(), 1, 6, "auto")
    assert not older.resume and "no run identity" in older.note


def test_loss_curve_appends_and_a_resume_cuts_the_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "train_losses.tsv"
    curve = LossCurve(path)
    curve.start()
    for step in (2, 4, 6):
        curve.append(step, {"perceptual": step / 10, "total": step / 5})
    curve.close()
    assert path.read_text() == "step\tperceptual\ttotal\n2\t0.2\t0.4\n4\t0.4\t0.8\n6\t0.6\t1.2\n"
    with path.open("a") as f:
        f.write("8\t0.8")  # a row cut short by a kill

    resumed = LossCurve(path)
    assert resumed.resume(4) is None  # checkpoint at step 4: rows 6 and the partial 8 go
    resumed.append(6, {"perceptual": 0.65, "total": 1.3})
    resumed.close()
    assert path.read_text() == "step\tperceptual\ttotal\n2\t0.2\t0.4\n4\t0.4\t0.8\n6\t0.65\t1.3\n"

    fixed = LossCurve(tmp_path / "talker_losses.tsv", columns=["loss", "gan_g"])
    fixed.start()
    fixed.append(1, {"loss": 1.0})  # a value the loop did not compute is an empty cell
    fixed.close()
    assert (tmp_path / "talker_losses.tsv").read_text() == "step\tloss\tgan_g\n1\t1\t\n"
    other = LossCurve(tmp_path / "talker_losses.tsv", columns=["loss", "sync"])
    assert "no earlier curve" in other.resume(1)  # other columns: started anew
    other.close()
    assert (tmp_path / "talker_losses.tsv").read_text() == "step\tloss\tsync\n"
    assert "no earlier curve" in LossCurve(tmp_path / "missing.tsv").resume(3)


def trains_one_step(model, losses: LossConfig, size: int) -> bool:
    """Whether a real forward of every trained part runs at ``size`` x ``size``."""
    kp_detector, generator, discriminator = build_models(model)
    perceptual = build_perceptual_loss(losses, torch.device("cpu"))[0] if any(losses.perceptual) else None
    full = GeneratorFullModel(kp_detector, generator, perceptual, losses)
    frames = torch.rand(2, 3, size, size)
    try:
        with torch.no_grad():
            _, out = full(frames, frames, random_transform(losses, 2), discriminator if losses.generator_gan else None)
            if losses.generator_gan:
                DiscriminatorFullModel(discriminator, losses)(out["prediction"], frames, out["kp_driving"])
    except (RuntimeError, ValueError):
        return False
    return True


@pytest.mark.parametrize("name, model, losses, expected", [
    ("tiny", tiny_model(), tiny_losses(), 32),  # keypoint detector: 3 halvings after scale 0.25
    ("tiny with GAN", tiny_model(), tiny_losses(gan=1.0), 61),  # 4 discriminator blocks
    ("make-run default", small_model_config(), LossConfig(perceptual_backbone="random"), 121),  # VGG at scale 1/8
])
def test_minimum_frame_size_is_exact(name, model, losses, expected):
    assert max(minimum_frame_sizes(model, losses).values()) == expected
    assert trains_one_step(model, losses, expected) and not trains_one_step(model, losses, expected - 1)
    check_frame_size(expected, model, losses)
    with pytest.raises(FommError) as error:
        check_frame_size(expected - 1, model, losses)
    assert "\n" not in str(error.value) and f"at least {expected} px" in str(error.value)


def test_frame_size_7_names_the_part_that_needs_more():
    with pytest.raises(FommError, match=r"train.frame_size 7 is too small: the keypoint detector \(scale_factor 0.25, "
                                        r"3 hourglass blocks\) needs frames of at least 32 px"):
        check_frame_size(7, tiny_model(), LossConfig(perceptual=[0.0] * 5))
