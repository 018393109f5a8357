"""One options object for the solve (ml_core.retarget.SolveOptions): one set of defaults, overrides by name."""

from __future__ import annotations

import inspect
from dataclasses import fields

import numpy as np
import pytest

from ml_core.retarget import SolveOptions, smooth_weights, solve_bounded, solve_weights
from tests.ml_core.test_retarget import _linear_world


def test_solve_bounded_defaults_to_the_solve_options_regularization():
    default = inspect.signature(solve_bounded).parameters["regularization"].default
    assert default == SolveOptions().regularization == 0.1


def test_options_and_named_overrides_give_the_same_solve():
    calib, _, values, jacs = _linear_world(t=30)
    opts = SolveOptions(regularization=1e-6, jacobian_weight=0.1, auto_neutral=False, smooth_sigma=1.0)
    a = solve_weights(calib, values, jacs, 0, options=opts)
    b = solve_weights(
        calib, values, jacs, 0, regularization=1e-6, jacobian_weight=0.1, auto_neutral=False, smooth_sigma=1.0
    )
    c = solve_weights(
        calib,
        values,
        jacs,
        0,
        options=SolveOptions(regularization=1e-6),
        jacobian_weight=0.1,
        auto_neutral=False,
        smooth_sigma=1.0,
    )
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.weights, c.weights)
    default = solve_weights(calib, values, jacs, 0)
    explicit = solve_weights(calib, values, jacs, 0, options=SolveOptions())
    np.testing.assert_array_equal(default.weights, explicit.weights)
    assert not np.array_equal(default.weights, a.weights)


def test_a_misspelt_setting_is_refused():
    calib, _, values, jacs = _linear_world(t=5)
    with pytest.raises(TypeError, match="regularisation"):
        solve_weights(calib, values, jacs, 0, regularisation=0.5)


def test_smooth_weights_is_the_one_smoothing():
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 1, (40, 3))
    assert smooth_weights(w, 0.0) is w and smooth_weights(w[:1], 2.0) is not None
    s = smooth_weights(w, 2.0)
    assert s.shape == w.shape and s.min() >= 0 and s.max() <= 1
    assert np.abs(np.diff(s, axis=0)).mean() < np.abs(np.diff(w, axis=0)).mean()


def test_the_solve_settings():
    """The settings a bake passes (docs/development.md: 'add a bake setting' adds one here)."""
    assert [f.name for f in fields(SolveOptions)] == [
        "regularization",
        "jacobian_weight",
        "adapt_scale",
        "remove_head",
        "auto_neutral",
        "use_poses",
        "smooth_sigma",
    ]
