"""Dense motion network (paper section 3.2-3.3): from sparse keypoint motions to a dense flow and occlusion map.

For each keypoint k the local first-order (affine) motion maps a driving-frame coordinate z to the source:
``T_k(z) = p_k^S + J_k (z - p_k^D)`` with ``J_k = J_k^S (J_k^D)^-1`` (eq. 4); k = 0 is the identity (background).
The source warped by each T_k, and heatmap differences marking where each keypoint moved, feed an hourglass that
predicts K+1 soft masks combining the motions (eq. 6) and an occlusion map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ml_core.modules.blocks import AntiAliasInterpolation2d, Hourglass, kp2gaussian, make_coordinate_grid


class DenseMotionNetwork(nn.Module):
    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_kp: int,
        num_channels: int,
        estimate_occlusion_map: bool = False,
        scale_factor: float = 1,
        kp_variance: float = 0.01,
        align_corners: bool = True,
    ):
        super().__init__()
        self.hourglass = Hourglass(
            block_expansion=block_expansion,
            in_features=(num_kp + 1) * (num_channels + 1),
            max_features=max_features,
            num_blocks=num_blocks,
        )
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        else:
            self.occlusion = None
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def downsample(self, source_image: torch.Tensor) -> torch.Tensor:
        """The source at the motion network's resolution (constant over a clip: compute it once)."""
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def heatmap_representations(self, spatial_size: tuple[int, int], kp_driving: dict, kp_source: dict) -> torch.Tensor:
        """[B, K+1, 1, h, w]: driving minus source Gaussians, with a zero map for the background."""
        heatmap = kp2gaussian(kp_driving["value"], spatial_size, self.kp_variance) - kp2gaussian(
            kp_source["value"], spatial_size, self.kp_variance
        )
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, *spatial_size)
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def sparse_motions(self, spatial_size: tuple[int, int], kp_driving: dict, kp_source: dict) -> torch.Tensor:
        """[B, K+1, h, w, 2] sampling grids: identity, then T_k for each keypoint."""
        h, w = spatial_size
        value_d = kp_driving["value"]
        b, k = value_d.shape[:2]
        identity = make_coordinate_grid(h, w, dtype=value_d.dtype, device=value_d.device)
        coords = identity.view(1, 1, h, w, 2) - value_d.view(b, k, 1, 1, 2)
        if "jacobian" in kp_driving and kp_driving.get("jacobian") is not None:
            jac = kp_source["jacobian"] @ torch.inverse(kp_driving["jacobian"])  # [B, K, 2, 2]
            coords = torch.einsum("bkij,bkhwj->bkhwi", jac, coords)
        driving_to_source = coords + kp_source["value"].view(b, k, 1, 1, 2)
        return torch.cat([identity.view(1, 1, h, w, 2).expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def deformed_sources(self, source_image: torch.Tensor, sparse_motion: torch.Tensor) -> torch.Tensor:
        """The (downsampled) source warped by each of the K+1 motions: [B, K+1, C, h, w]."""
        b, c, h, w = source_image.shape
        n = sparse_motion.shape[1]
        repeated = source_image.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        warped = F.grid_sample(repeated, sparse_motion.reshape(b * n, h, w, 2), align_corners=self.align_corners)
        return warped.view(b, n, c, h, w)

    def forward(
        self, source_image: torch.Tensor, kp_driving: dict, kp_source: dict, source_small: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        small = self.downsample(source_image) if source_small is None else source_small
        b, _, h, w = small.shape
        heatmap = self.heatmap_representations((h, w), kp_driving, kp_source)
        sparse_motion = self.sparse_motions((h, w), kp_driving, kp_source)
        deformed = self.deformed_sources(small, sparse_motion)
        out = {"sparse_deformed": deformed}
        net_in = torch.cat([heatmap, deformed], dim=2).view(b, -1, h, w)
        prediction = self.hourglass(net_in)
        mask = F.softmax(self.mask(prediction), dim=1)
        out["mask"] = mask
        # eq. 6: the dense flow is the mask-weighted sum of the K+1 motions
        out["deformation"] = (sparse_motion * mask.unsqueeze(-1)).sum(dim=1)
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out
