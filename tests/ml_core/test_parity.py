"""Parity with the authors' implementation: tests/data/fomm_reference (both grid_sample conventions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml_core import load_model, relative_motion
from tests.conftest import FIXTURE_DIR, TINY_CKPT, TINY_YAML

ATOL = 1e-5
# ``deformed`` (the source warped by the dense motion) is visualisation-only: no other output is computed from it.
# Its bilinear border samples amplify float32 kernel differences between CPUs (1 element of 49,152 is 1.48e-5 off on
# Intel AVX-512/AMX, within 1e-5 on AMD), so it is held to 5e-5 in both parity tests; every other output to 1e-5.
ATOL_DEFORMED = 5e-5


@pytest.fixture(scope="module")
def inputs():
    data = np.load(FIXTURE_DIR / "tiny-inputs.npz")
    return torch.from_numpy(data["source"]), torch.from_numpy(data["driving"])


def _expected(align_corners: bool) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURE_DIR / f"tiny-expected-align_corners_{str(align_corners).lower()}.npz"))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


@pytest.mark.parametrize("align_corners", [True, False])
def test_each_stage_matches_reference(inputs, align_corners):
    """Each stage, fed the reference's own inputs to that stage, reproduces its outputs to 1e-5 (``deformed``: 5e-5)."""
    source, driving = inputs
    exp = _expected(align_corners)
    bundle = load_model(TINY_CKPT, TINY_YAML, align_corners=align_corners)
    with torch.inference_mode():
        kp_s = bundle.kp_detector(source)
        kp_d = bundle.kp_detector(driving)
        np.testing.assert_allclose(kp_s["value"].numpy(), exp["kp_source_value"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(kp_s["jacobian"].numpy(), exp["kp_source_jacobian"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(kp_d["value"].numpy(), exp["kp_driving_value"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(kp_d["jacobian"].numpy(), exp["kp_driving_jacobian"], rtol=0, atol=ATOL)

        ref_s = {"value": _t(exp["kp_source_value"]), "jacobian": _t(exp["kp_source_jacobian"])}
        ref_d = {"value": _t(exp["kp_driving_value"]), "jacobian": _t(exp["kp_driving_jacobian"])}
        ref_init = {k: v[:1] for k, v in ref_d.items()}
        kp_norm = relative_motion(ref_s, ref_d, ref_init, adapt_movement_scale=True)
        np.testing.assert_allclose(kp_norm["value"].numpy(), exp["kp_norm_value"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(kp_norm["jacobian"].numpy(), exp["kp_norm_jacobian"], rtol=0, atol=ATOL)

        n = driving.shape[0]
        kp_src_b = {k: v.expand(n, *v.shape[1:]) for k, v in ref_s.items()}
        kp_drv = {"value": _t(exp["kp_norm_value"]), "jacobian": _t(exp["kp_norm_jacobian"])}
        out = bundle.generator(source.expand(n, -1, -1, -1), kp_driving=kp_drv, kp_source=kp_src_b)
        for name in ("prediction", "mask", "occlusion_map", "deformed"):
            assert out[name].shape == exp[name].shape, name
            atol = ATOL_DEFORMED if name == "deformed" else ATOL
            np.testing.assert_allclose(out[name].numpy(), exp[name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("align_corners", [True, False])
def test_chained_pipeline_matches_reference(inputs, align_corners):
    """Detector -> relative motion -> generator, chained on our own intermediate results.

    float32 differences of ~1e-7 in the detector's Jacobians pass through a matrix inverse and a border sample of
    the warped source, so the visualisation-only ``deformed`` image is held to 5e-5 here; every other output to 1e-5.
    """
    source, driving = inputs
    exp = _expected(align_corners)
    bundle = load_model(TINY_CKPT, TINY_YAML, align_corners=align_corners)
    with torch.inference_mode():
        kp_s = bundle.kp_detector(source)
        kp_d = bundle.kp_detector(driving)
        kp_norm = relative_motion(kp_s, kp_d, {k: v[:1] for k, v in kp_d.items()})
        n = driving.shape[0]
        out = bundle.generator(
            source.expand(n, -1, -1, -1),
            kp_driving=kp_norm,
            kp_source={k: v.expand(n, *v.shape[1:]) for k, v in kp_s.items()},
        )
    np.testing.assert_allclose(kp_norm["value"].numpy(), exp["kp_norm_value"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(kp_norm["jacobian"].numpy(), exp["kp_norm_jacobian"], rtol=0, atol=ATOL)
    for name in ("prediction", "mask", "occlusion_map"):
        np.testing.assert_allclose(out[name].numpy(), exp[name], rtol=0, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(out["deformed"].numpy(), exp["deformed"], rtol=0, atol=ATOL_DEFORMED)


def test_align_corners_settings_differ(inputs):
    """The two conventions really are different computations (the test above is not vacuous)."""
    a, b = _expected(True), _expected(False)
    assert np.abs(a["prediction"] - b["prediction"]).max() > 1e-3


def test_cached_source_encoding_is_identical(inputs):
    """Passing the source's encoding and downsampled image in (as a clip does once) changes nothing."""
    source, driving = inputs
    bundle = load_model(TINY_CKPT, TINY_YAML)
    with torch.inference_mode():
        kp_s = bundle.kp_detector(source)
        kp_d = bundle.kp_detector(driving)
        n = driving.shape[0]
        src = source.expand(n, -1, -1, -1)
        kp_sb = {k: v.expand(n, *v.shape[1:]) for k, v in kp_s.items()}
        full = bundle.generator(src, kp_driving=kp_d, kp_source=kp_sb)
        feats = bundle.generator.encode(source).expand(n, -1, -1, -1)
        small = bundle.generator.dense_motion_network.downsample(source).expand(n, -1, -1, -1)
        cached = bundle.generator(
            src, kp_driving=kp_d, kp_source=kp_sb, source_features=feats, source_small=small, with_deformed=False
        )
    assert "deformed" not in cached
    torch.testing.assert_close(cached["prediction"], full["prediction"], rtol=0, atol=1e-6)
