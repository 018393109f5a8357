"""Rules that used to be written twice now live once: the preview (torch) and the bake (numpy) share them."""

from __future__ import annotations

import numpy as np
import torch

from ml_core import geometry, retarget
from ml_core.motion import relative_motion


def test_preview_and_bake_use_the_same_movement_scale():
    rng = np.random.default_rng(0)
    src = rng.uniform(-0.5, 0.5, (5, 2)).astype(np.float32)
    init = (src * 0.5).astype(np.float32)
    drv = init[None] + rng.normal(scale=0.05, size=(3, 5, 2)).astype(np.float32)
    kp_s = {"value": torch.from_numpy(src)[None]}
    kp_i = {"value": torch.from_numpy(init)[None]}
    kp_d = {"value": torch.from_numpy(drv)}
    scale = geometry.movement_scale(src, init)
    assert retarget.movement_scale is geometry.movement_scale and abs(scale - 2.0) < 1e-5
    out = relative_motion(kp_s, kp_d, kp_i, use_relative_jacobian=False)
    np.testing.assert_allclose(out["value"].numpy(), (drv - init) * scale + src, atol=1e-6)


def test_a_degenerate_hull_leaves_motion_unscaled_on_both_sides():
    line = np.stack([np.linspace(-0.5, 0.5, 5), np.zeros(5)], -1).astype(np.float32)  # all keypoints on a line
    face = np.array([[0, 0], [0.4, 0], [0.4, 0.4], [0, 0.4], [0.2, 0.6]], np.float32)
    assert geometry.movement_scale(face, line) == 1.0 and geometry.movement_scale(line, face) == 1.0
    kp_s, kp_i = {"value": torch.from_numpy(face)[None]}, {"value": torch.from_numpy(line)[None]}
    drv = {"value": torch.from_numpy(line + 0.1)[None]}
    out = relative_motion(kp_s, drv, kp_i, use_relative_jacobian=False)
    np.testing.assert_allclose(out["value"].numpy()[0], face + 0.1, atol=1e-6)
