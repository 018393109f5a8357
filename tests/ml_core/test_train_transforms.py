"""Random affine + TPS warps, equivariance and reconstruction losses (ml_core.train.transforms / losses)."""

from __future__ import annotations

import pytest
import torch

from ml_core.errors import FommError
from ml_core.modules.blocks import make_coordinate_grid
from ml_core.train.losses import Vgg19, equivariance_losses, load_vgg19, ssim
from ml_core.train.transforms import RandomTPS


def _blob(points: torch.Tensor, size: int = 48, var: float = 0.004) -> torch.Tensor:
    """[B, 1, S, S] images with one Gaussian blob per item at ``points`` [B, 2]."""
    grid = make_coordinate_grid(size, size)
    d = ((grid.view(1, size, size, 2) - points.view(-1, 1, 1, 2)) ** 2).sum(-1)
    return torch.exp(-0.5 * d / var).unsqueeze(1)


def _centroid(img: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted mean position [B, 2] (an exactly warp-equivariant 'keypoint detector' for blobs)."""
    b, _, h, w = img.shape
    grid = make_coordinate_grid(h, w)
    wts = img[:, 0].clamp_min(0)
    wts = wts / wts.sum(dim=(1, 2), keepdim=True)
    return (wts.unsqueeze(-1) * grid).sum(dim=(1, 2))


def test_identity_at_zero_sigma() -> None:
    t = RandomTPS(3, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    pts = torch.rand(3, 7, 2) * 2 - 1
    assert torch.allclose(t.warp_coordinates(pts), pts)
    assert torch.allclose(t.jacobian(pts), torch.eye(2).expand(3, 7, 2, 2))
    img = torch.rand(3, 3, 16, 16)
    assert torch.allclose(t.transform_frame(img), img, atol=1e-5)


def test_analytic_jacobian_matches_autograd() -> None:
    torch.manual_seed(0)
    t = RandomTPS(2, sigma_affine=0.1, sigma_tps=0.05, points_tps=4)
    pts = (torch.rand(2, 5, 2) * 1.6 - 0.8).requires_grad_(True)
    out = t.warp_coordinates(pts)
    gx = torch.autograd.grad(out[..., 0].sum(), pts, retain_graph=True)[0]
    gy = torch.autograd.grad(out[..., 1].sum(), pts)[0]
    expected = torch.stack([gx, gy], dim=-2)
    assert torch.allclose(t.jacobian(pts.detach()), expected, atol=1e-5)
    assert not torch.allclose(expected, torch.eye(2).expand_as(expected), atol=1e-3)


def test_warp_of_coordinates_matches_warp_of_images() -> None:
    torch.manual_seed(1)
    b = 4
    t = RandomTPS(b, sigma_affine=0.08, sigma_tps=0.01, points_tps=5)
    q = torch.rand(b, 2) * 1.0 - 0.5  # blob position in the transformed image
    p = t.warp_coordinates(q.unsqueeze(1))[:, 0]  # where it must be in the original
    original = _blob(p)
    transformed = t.transform_frame(original)
    found = _centroid(transformed)
    assert torch.allclose(found, q, atol=0.02), (found, q)
    assert (p - q).abs().max() > 0.02  # the warp actually moved it


def test_equivariance_loss_zero_for_equivariant_toy() -> None:
    torch.manual_seed(2)
    b = 4
    t = RandomTPS(b, sigma_affine=0.08, sigma_tps=0.01, points_tps=5)
    p = torch.rand(b, 2) * 1.0 - 0.5
    x = _blob(p)
    kp_x = {"value": _centroid(x).unsqueeze(1), "jacobian": torch.eye(2).expand(b, 1, 2, 2) * 1.3}
    y = t.transform_frame(x)
    q = _centroid(y).unsqueeze(1)
    # an equivariant detector's Jacobian at q in Y is dT(q)^-1 J_X
    kp_y = {"value": q, "jacobian": torch.inverse(t.jacobian(q)) @ kp_x["jacobian"]}
    v, j = equivariance_losses(kp_x, kp_y, t, with_jacobian=True)
    assert float(v) < 0.01 and float(j) < 1e-5
    # and a detector that ignores the warp is penalised
    v_bad, j_bad = equivariance_losses(kp_x, {"value": kp_x["value"], "jacobian": kp_x["jacobian"]}, t, True)
    assert float(v_bad) > 5 * float(v) and float(j_bad) > 1e-3


def test_ssim_and_vgg19_weights(tmp_path) -> None:
    x = torch.rand(2, 3, 20, 20)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(x, torch.rand_like(x))) < 0.5
    vgg = Vgg19()
    state = {k: torch.randn_like(v) for k, v in vgg.state_dict().items() if k.startswith("features.")}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's dict has the classifier too: ignored
    torch.save(state, tmp_path / "vgg19.pth")
    loaded = load_vgg19(tmp_path / "vgg19.pth")
    assert torch.equal(loaded.features[0].weight, state["features.0.weight"])
    feats = loaded(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(
        FommError,
        match=r"do not match .*: 'features\.0\.weight' is \(3\) in the file but "
        r"\(64, 3, 3, 3\) in vgg19$",
    ):
        load_vgg19(tmp_path / "bad.pth")
    del state["features.2.bias"]  # the first missing tensor is named, not PyTorch's "Error(s) in loading ..."
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(FommError, match=r"'features\.2\.bias' \(shape \(64\)\) is missing from the file$"):
        load_vgg19(tmp_path / "short.pth")
    (tmp_path / "text.pth").write_text("not weights\n" * 10)  # no exception class name in the message
    with pytest.raises(FommError, match=r"could not be read \(damaged, or not a plain tensor file\): give torchvision"):
        load_vgg19(tmp_path / "text.pth")
