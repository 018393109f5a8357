"""Training losses: image pyramid, VGG19 perceptual loss (user-supplied weights) or its fallback, SSIM,
equivariance of keypoint values and Jacobians, least-squares GAN + feature matching, landmark supervision.

VGG19 ImageNet weights cannot be downloaded on every machine, so :class:`Vgg19` is defined here (torchvision's
``features`` layer indices, so a torchvision ``vgg19`` state dict loads strictly) and only used when a weight file is
given. Without one, the reconstruction term is the documented fallback: at every pyramid scale
``w_l1 * L1 + w_ssim * (1 - SSIM) / 2`` (weights ``loss_weights.reconstruction_l1`` / ``reconstruction_ssim``,
both defaulting to the first ``perceptual`` weight).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ml_core.errors import FommError
from ml_core.model import shape_str
from ml_core.modules.blocks import AntiAliasInterpolation2d

# torchvision's vgg19 "features": conv channel counts, "M" = max pooling.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Feature slices the authors' perceptual loss reads (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1), as end indices.
_VGG19_SLICES = (2, 7, 12, 21, 30)


class ImagePyramid(nn.Module):
    """Anti-aliased downsampled copies of an image, keyed ``prediction_<scale>``."""

    def __init__(self, scales: list[float] | tuple[float, ...], num_channels: int = 3):
        super().__init__()
        self.scales = list(scales)  # keys use str(scale) as written in the config, like the discriminator's
        self.downs = nn.ModuleDict(
            {str(s).replace(".", "-"): AntiAliasInterpolation2d(num_channels, float(s)) for s in self.scales}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"prediction_" + k.replace("-", "."): down(x) for k, down in self.downs.items()}


class Vgg19(nn.Module):
    """VGG19 feature extractor (torchvision layer layout), frozen; returns the five relu_x_1 activations."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = (x - self.mean) / self.std
        feats = []
        start = 0
        for end in _VGG19_SLICES:
            for i in range(start, end):
                out = self.features[i](out)
            feats.append(out)
            start = end
        return feats


def _vgg19_mismatch(feats: dict, expected: dict[str, tuple[int, ...]]) -> str:
    """The first way a ``features.*`` state dict differs from torchvision's vgg19 (a missing or unexpected tensor,
    or a shape), in words; ``""`` when it fits."""
    for key, shape in expected.items():
        name = f"features.{key}"
        if name not in feats:
            return f"'{name}' (shape {shape_str(shape)}) is missing from the file"
        have = tuple(getattr(feats[name], "shape", ()))
        if have != shape:
            return f"'{name}' is {shape_str(have)} in the file but {shape_str(shape)} in vgg19"
    extra = sorted(k for k in feats if k.removeprefix("features.") not in expected)
    if extra:
        return f"the file has '{extra[0]}', which vgg19 does not have"
    return ""


def load_vgg19(path: str | os.PathLike) -> Vgg19:
    """A :class:`Vgg19` with weights from a torchvision-layout state dict (``features.N.weight`` ...)."""
    path = Path(path)
    if not path.is_file():
        raise FommError(f"VGG19 weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any reader failure is the user's file
        raise FommError(
            f"VGG19 weights {path} could not be read (damaged, or not a plain tensor file): give "
            "torchvision's vgg19 state dict (.pth) or a safetensors copy"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FommError(f"VGG19 weights {path} are not a state dict")
    feats = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    vgg = Vgg19()
    mismatch = _vgg19_mismatch(feats, {k: tuple(v.shape) for k, v in vgg.features.state_dict().items()})
    if mismatch:
        raise FommError(f"VGG19 weights {path} do not match torchvision's vgg19 features: {mismatch}")
    try:
        vgg.load_state_dict({**feats, "mean": vgg.mean, "std": vgg.std}, strict=True)
    except RuntimeError as exc:
        raise FommError(
            f"VGG19 weights {path} do not match torchvision's vgg19 features: {str(exc).splitlines()[0]}"
        ) from None
    return vgg.eval()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7, c1: float = 0.01**2, c2: float = 0.03**2) -> torch.Tensor:
    """Mean structural similarity of two image batches in [0, 1] (box window, reflection padding)."""
    pad = window // 2
    if min(x.shape[2:]) <= pad:
        return 1.0 - (x - y).abs().mean()  # too small for a window: degrade gracefully to 1 - L1
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    yp = F.pad(y, (pad,) * 4, mode="reflect")
    mu_x = F.avg_pool2d(xp, window, 1)
    mu_y = F.avg_pool2d(yp, window, 1)
    sxx = F.avg_pool2d(xp * xp, window, 1) - mu_x**2
    syy = F.avg_pool2d(yp * yp, window, 1) - mu_y**2
    sxy = F.avg_pool2d(xp * yp, window, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def reconstruction_loss(
    pyramid_real: dict[str, torch.Tensor], pyramid_fake: dict[str, torch.Tensor], weights: dict, vgg: Vgg19 | None
) -> torch.Tensor:
    """Multi-scale perceptual loss (VGG19 when given) or the L1 + SSIM fallback, summed over scales."""
    total = pyramid_real[next(iter(pyramid_real))].new_zeros(())
    perceptual = weights.get("perceptual") or [10.0]
    if isinstance(perceptual, int | float):
        perceptual = [float(perceptual)]
    w_l1 = float(weights.get("reconstruction_l1", perceptual[0]))
    w_ssim = float(weights.get("reconstruction_ssim", perceptual[0]))
    for key, real in pyramid_real.items():
        fake = pyramid_fake[key]
        if vgg is not None:
            fx, fy = vgg(fake), vgg(real.detach())
            for w, a, b in zip(perceptual, fx, fy, strict=False):
                total = total + float(w) * (a - b.detach()).abs().mean()
        else:
            total = total + w_l1 * (fake - real).abs().mean()
            if w_ssim:
                total = total + w_ssim * (1.0 - ssim(fake, real)) / 2
    return total


def equivariance_losses(
    kp_driving: dict, kp_transformed: dict, transform: object, with_jacobian: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Paper eq. (equivariance): ``|p_X - T(p_Y)|`` and ``|I - J_X^-1 (dT(p_Y) J_Y)|`` (L1, means)."""
    warped = transform.warp_coordinates(kp_transformed["value"])
    value_loss = (kp_driving["value"] - warped).abs().mean()
    if not with_jacobian or kp_driving.get("jacobian") is None:
        return value_loss, None
    jac_t = transform.jacobian(kp_transformed["value"]) @ kp_transformed["jacobian"]
    normed = torch.inverse(kp_driving["jacobian"]) @ jac_t
    eye = torch.eye(2, dtype=normed.dtype, device=normed.device).expand_as(normed)
    return value_loss, (eye - normed).abs().mean()


def landmark_loss(kp_value: torch.Tensor, landmarks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 between the first L keypoints and their landmarks ``[B, L, 2]``, over items with ``valid`` [B] true."""
    n = landmarks.shape[1]
    err = (kp_value[:, :n] - landmarks).abs().mean(dim=(1, 2))
    m = valid.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def landmark_motion_loss(
    kp_source: torch.Tensor,
    kp_driving: torch.Tensor,
    lm_source: torch.Tensor,
    lm_driving: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """L1 between the keypoints' motion from source to driving and their landmarks' motion ``[B, L, 2]``, over items
    with ``valid`` [B] true. An error every frame of a face shares cancels here: what it weighs is the small motions
    (a brow, a lid, a mouth corner) that the absolute term hardly notices beside a keypoint's offset."""
    return landmark_loss(kp_driving - kp_source, lm_driving - lm_source, valid)


def generator_gan_loss(disc_fake: dict, scales: list) -> torch.Tensor:
    """Least-squares GAN, generator side: ``mean((1 - D(fake))^2)`` over discriminator scales."""
    total = None
    for s in scales:
        term = ((1 - disc_fake["prediction_map_" + str(s)]) ** 2).mean()
        total = term if total is None else total + term
    return total


def discriminator_gan_loss(disc_real: dict, disc_fake: dict, scales: list) -> torch.Tensor:
    total = None
    for s in scales:
        term = ((1 - disc_real["prediction_map_" + str(s)]) ** 2 + disc_fake["prediction_map_" + str(s)] ** 2).mean()
        total = term if total is None else total + term
    return total


def feature_matching_loss(disc_real: dict, disc_fake: dict, scales: list, weights: list | float) -> torch.Tensor:
    total = None
    for s in scales:
        real_maps = disc_real["feature_maps_" + str(s)]
        fake_maps = disc_fake["feature_maps_" + str(s)]
        ws = weights if isinstance(weights, list | tuple) else [weights] * len(real_maps)
        for w, a, b in zip(ws, real_maps, fake_maps, strict=False):
            term = float(w) * (a.detach() - b).abs().mean()
            total = term if total is None else total + term
    return total
