"""The landmark mouth opening against the speech envelope (evaluate-talker's rendered-mouth metric)."""

from __future__ import annotations

import numpy as np
import torch

from fomm_core.faces import DlibBackend
from fomm_core.talker.rendered_mouth import envelope_correlation, mouth_track, render_keypoints, speech_envelope

from _face_helpers import draw
from _inference_helpers import tiny_models


def test_drawn_mouths_follow_their_envelope_and_not_another():
    rng = np.random.default_rng(0)
    envelope = np.clip(np.convolve(rng.random(40), np.ones(4) / 4, mode="same"), 0, 1)
    frames = [draw(480, 270, [(2, 240, 135, 1.0)], mouth_open=float(e)) for e in envelope]
    mouth = mouth_track(DlibBackend(), frames)
    assert np.isfinite(mouth).all()
    assert envelope_correlation(mouth, envelope) > 0.9
    assert abs(envelope_correlation(mouth, rng.permutation(envelope))) < 0.5
    assert envelope_correlation(np.full(40, np.nan), envelope) is None  # no face, no number


def test_speech_envelope_is_one_value_per_video_frame():
    logmels = np.zeros((12, 26), np.float32)
    logmels[4:8] = 2.0
    assert np.array_equal(speech_envelope(logmels, 4), [0.0, 2.0, 0.0])


def test_render_keypoints_gives_one_frame_per_vector():
    kp_detector, generator = tiny_models()
    source = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        kp = kp_detector(source)
    vector = torch.cat([kp["value"].reshape(1, -1), kp["jacobian"].reshape(1, -1)], dim=-1).numpy()
    frames = render_keypoints(kp_detector, generator, source, np.repeat(vector, 5, axis=0), batch_size=2)
    assert len(frames) == 5 and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
