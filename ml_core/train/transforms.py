"""Random affine + thin-plate-spline (TPS) warps for the equivariance constraint (paper section 3.5).

A :class:`RandomTPS` draws, per batch item, a map ``T`` from the coordinates of the *transformed* image to those
of the original (``[-1, 1]``, x right, y down):

``T(z) = A z + t + sum_i w_i U(|z - c_i|)``,   ``U(r) = r^2 log r``

with ``A = I + N(0, sigma_affine)``, ``t ~ N(0, sigma_affine)``, control points ``c_i`` on a ``points_tps`` x
``points_tps`` grid and weights ``w_i ~ N(0, sigma_tps)``. The transformed image is ``Y(z) = X(T(z))`` (``grid_sample``
with the grid ``T(z)``), so a keypoint found at ``z`` in ``Y`` must sit at ``T(z)`` in ``X``, and its Jacobian at ``z``
composes with ``dT/dz`` (the ``jacobian`` method, computed analytically).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ml_core.modules.blocks import make_coordinate_grid


class RandomTPS:
    """A batch of random affine + TPS maps (all on ``device``, dtype float32)."""

    def __init__(
        self,
        batch: int,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ):
        dev = torch.device(device)

        def noise(*shape: int, std: float) -> torch.Tensor:
            return (torch.randn(*shape, generator=generator) * std).to(dev)

        eye = torch.eye(2).view(1, 2, 2).to(dev)
        self.affine = eye + noise(batch, 2, 2, std=sigma_affine)  # [B, 2, 2]
        self.shift = noise(batch, 2, std=sigma_affine)  # [B, 2]
        n = max(int(points_tps), 0)
        if n > 0 and sigma_tps > 0:
            self.control_points = make_coordinate_grid(n, n, device=dev).view(1, n * n, 2)  # [1, P, 2]
            self.control_params = noise(batch, n * n, 2, std=sigma_tps)  # [B, P, 2]
        else:
            self.control_points = None
            self.control_params = None
        self.batch = batch

    # -------------------------------------------------------------------------------------------- maps
    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """``T`` applied to points ``[B, N, 2]`` (or ``[N, 2]``, broadcast over the batch) -> ``[B, N, 2]``."""
        if coords.dim() == 2:
            coords = coords.unsqueeze(0).expand(self.batch, -1, -1)
        a = self.affine.to(coords.dtype)
        out = torch.einsum("bij,bnj->bni", a, coords) + self.shift.to(coords.dtype).unsqueeze(1)
        if self.control_points is not None:
            diff = coords.unsqueeze(2) - self.control_points.to(coords.dtype).unsqueeze(0)  # [B, N, P, 2]
            r2 = (diff**2).sum(-1)
            u = 0.5 * r2 * torch.log(r2 + 1e-9)  # r^2 log r
            out = out + torch.einsum("bnp,bpi->bni", u, self.control_params.to(coords.dtype))
        return out

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """``dT/dz`` at points ``[B, N, 2]`` -> ``[B, N, 2, 2]`` (row i: output coordinate i)."""
        if coords.dim() == 2:
            coords = coords.unsqueeze(0).expand(self.batch, -1, -1)
        jac = self.affine.to(coords.dtype).unsqueeze(1).expand(-1, coords.shape[1], -1, -1)
        if self.control_points is not None:
            diff = coords.unsqueeze(2) - self.control_points.to(coords.dtype).unsqueeze(0)  # [B, N, P, 2]
            r2 = (diff**2).sum(-1)
            # d/dz [0.5 r^2 log r^2] = (log r^2 + 1) (z - c)
            du = (torch.log(r2 + 1e-9) + 1.0).unsqueeze(-1) * diff  # [B, N, P, 2]
            jac = jac + torch.einsum("bpi,bnpj->bnij", self.control_params.to(coords.dtype), du)
        return jac

    # ------------------------------------------------------------------------------------------ images
    def grid(self, height: int, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        base = make_coordinate_grid(height, width, dtype=dtype, device=self.affine.device).view(1, -1, 2)
        return self.warp_coordinates(base).view(self.batch, height, width, 2)

    def transform_frame(self, frame: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
        """``Y(z) = X(T(z))`` for a batch ``[B, C, H, W]`` (reflection padding outside the original, as the authors)."""
        grid = self.grid(frame.shape[2], frame.shape[3], frame.dtype)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=align_corners)
