"""Keypoint detector with local affine Jacobians (paper section 3.2, "Motion module").

An hourglass predicts one heatmap per keypoint; a spatial softmax turns it into a distribution whose mean is the
keypoint (x, y in [-1, 1] over the *unpadded* heatmap grid). With Jacobians on, a second head predicts 4 numbers per
pixel (per keypoint, or one shared map), averaged under the keypoint's softmax weights into a 2x2 matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ml_core.modules.blocks import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid


class KPDetector(nn.Module):
    def __init__(
        self,
        block_expansion: int,
        num_kp: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        estimate_jacobian: bool = False,
        scale_factor: float = 1,
        single_jacobian_map: bool = False,
        pad: int = 0,
    ):
        super().__init__()
        self.predictor = Hourglass(
            block_expansion, in_features=num_channels, max_features=max_features, num_blocks=num_blocks
        )
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)
        self.num_kp = num_kp
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(
                self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=(7, 7), padding=pad
            )
            # Start from identity Jacobians (zero weights, bias [1, 0, 0, 1]).
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(self.num_jacobian_maps))
        else:
            self.jacobian = None
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmaps(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Softmax-normalised heatmaps [B, K, h, w]."""
        logits = self.kp(feature_map)
        b, k, h, w = logits.shape
        return F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.scale_factor != 1:
            x = self.down(x)
        feature_map = self.predictor(x)
        heatmap = self.heatmaps(feature_map)
        b, k, h, w = heatmap.shape
        grid = make_coordinate_grid(h, w, dtype=heatmap.dtype, device=heatmap.device)
        value = (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))  # expectation of the grid under each heatmap
        out = {"value": value}
        if self.jacobian is not None:
            jacobian_map = self.jacobian(feature_map).view(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jacobian_map).view(b, k, 4, -1).sum(dim=-1)
            out["jacobian"] = jacobian.view(b, k, 2, 2)
        return out
