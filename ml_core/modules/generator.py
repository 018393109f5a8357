"""Occlusion-aware generator (paper section 3.3, "Appearance module").

The source is encoded, its feature map warped by the dense motion and multiplied by the occlusion map, then decoded
into the driving frame's prediction. ``encode`` depends on the source alone, so a clip can encode it once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ml_core.modules.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from ml_core.modules.dense_motion import DenseMotionNetwork


class OcclusionAwareGenerator(nn.Module):
    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        estimate_occlusion_map: bool = False,
        dense_motion_params: dict | None = None,
        estimate_jacobian: bool = False,
        align_corners: bool = True,
    ):
        super().__init__()
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp,
                num_channels=num_channels,
                estimate_occlusion_map=estimate_occlusion_map,
                align_corners=align_corners,
                **dense_motion_params,
            )
        else:
            self.dense_motion_network = None
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))

        def feats(level: int) -> int:
            return min(max_features, block_expansion * (2**level))

        self.down_blocks = nn.ModuleList(
            DownBlock2d(feats(i), feats(i + 1), kernel_size=(3, 3), padding=(1, 1)) for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(feats(num_down_blocks - i), feats(num_down_blocks - i - 1), kernel_size=(3, 3), padding=(1, 1))
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(feats(num_down_blocks), kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels
        self.align_corners = align_corners

    def deform(self, x: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        """Warp ``x`` [B,C,H,W] by a sampling grid [B,h,w,2], resizing the grid (bilinear) when sizes differ."""
        h, w = x.shape[2:]
        if deformation.shape[1:3] != (h, w):
            deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
            deformation = deformation.permute(0, 2, 3, 1)
        return F.grid_sample(x, deformation, align_corners=self.align_corners)

    def encode(self, source_image: torch.Tensor) -> torch.Tensor:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        out = self.bottleneck(features)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))

    def forward(
        self,
        source_image: torch.Tensor,
        kp_driving: dict,
        kp_source: dict,
        source_features: torch.Tensor | None = None,
        source_small: torch.Tensor | None = None,
        with_deformed: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Animate ``source_image`` from ``kp_source`` to ``kp_driving``.

        ``source_features`` (``encode(source)``) and ``source_small`` (``dense_motion_network.downsample(source)``)
        may be passed in, expanded to the batch, when they are reused over a clip; ``with_deformed=False`` skips
        the visualisation-only warped source image.
        """
        out = self.encode(source_image) if source_features is None else source_features
        result: dict[str, torch.Tensor] = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(
                source_image=source_image, kp_driving=kp_driving, kp_source=kp_source, source_small=source_small
            )
            result["mask"] = motion["mask"]
            result["sparse_deformed"] = motion["sparse_deformed"]
            deformation = motion["deformation"]
            out = self.deform(out, deformation)
            occlusion_map = motion.get("occlusion_map")
            if occlusion_map is not None:
                result["occlusion_map"] = occlusion_map
                if out.shape[2:] != occlusion_map.shape[2:]:
                    occlusion_map = F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear")
                out = out * occlusion_map
            if with_deformed:
                result["deformed"] = self.deform(source_image, deformation)
        result["prediction"] = self.decode(out)
        return result
