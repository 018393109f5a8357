"""The Bake panel's solve settings are ml_core.retarget.SolveOptions; the preview's resampled clip keeps every field."""

from __future__ import annotations

from dataclasses import fields

import bpy
import numpy as np
import pytest

from blender_fomm import pipeline
from ml_core.clip import MotionClip, load_clip
from ml_core.retarget import SolveOptions
from tests.ml_core.test_clip import make_clip


def test_panel_defaults_are_the_solve_options_defaults():
    s = bpy.context.scene.fomm
    props = s.bl_rna.properties
    assert set(pipeline.PANEL_SOLVE_SETTINGS) == {f.name for f in fields(SolveOptions)} - {"use_poses"}
    panel = pipeline.solve_options(s)
    for name in pipeline.PANEL_SOLVE_SETTINGS:  # Blender stores float properties as float32
        assert props[name].default == pytest.approx(getattr(SolveOptions(), name), rel=1e-7), name
        assert getattr(panel, name) == pytest.approx(getattr(SolveOptions(), name), rel=1e-7), name


def test_solve_options_round_trip_through_the_panel():
    s = bpy.context.scene.fomm
    opts = SolveOptions(
        regularization=0.25,
        jacobian_weight=1.5,
        adapt_scale=False,
        remove_head=False,
        auto_neutral=False,
        smooth_sigma=2.0,
    )
    pipeline.set_solve_options(s, opts)
    assert pipeline.solve_options(s) == opts


def test_resampled_clip_keeps_every_field(tmp_path):
    """Resampling for the preview changes the samples only: smoothing, hashes, crop, version carry over."""
    clip = make_clip(t=12, k=5, fps=12.0, frame_indices=np.arange(12), reference_frame=3, ml_core_version="0.0.9")
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    path = tmp_path / "driving.npz"
    m = pipeline.resampled_clip(clip, scene, path)
    out = load_clip(path)
    assert out.num_frames == m == 23 and out.fps == 24.0 and out.reference_frame == 6
    assert out.notes == ("a note", "resampled to 24 fps for the preview")
    changed = {"values", "jacobians", "fps", "frame_indices", "sample_times", "reference_frame", "notes"}
    np.testing.assert_allclose(out.times, np.arange(m) / 24.0)
    for f in fields(MotionClip):
        if f.name not in changed:
            assert getattr(out, f.name) == getattr(clip, f.name), f.name
