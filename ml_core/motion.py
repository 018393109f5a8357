"""Relative motion transfer (paper section 3.4 / the authors' ``normalize_kp``).

Driving keypoints are applied to the source as displacements from an initial driving frame, so the source keeps its
own shape: ``value = (kp_driving - kp_driving_initial) * s + kp_source`` and
``jacobian = (J_driving @ inverse(J_driving_initial)) @ J_source``, where ``s`` (movement-scale adaptation) is
``sqrt(hull area of the source keypoints) / sqrt(hull area of the initial driving keypoints)``.
"""

from __future__ import annotations

import numpy as np
import torch

from ml_core.geometry import movement_scale


def first_values(kp: dict) -> np.ndarray:
    """The keypoint values of the first item of a batch, [K,2] float32 numpy (for :func:`movement_scale`)."""
    return kp["value"][0].detach().float().cpu().numpy()


def relative_motion(
    kp_source: dict,
    kp_driving: dict,
    kp_driving_initial: dict,
    adapt_movement_scale: bool = True,
    use_relative_movement: bool = True,
    use_relative_jacobian: bool = True,
    scale: float | None = None,
) -> dict[str, torch.Tensor]:
    """Keypoints to drive ``kp_source`` with; batches broadcast (source/initial of batch 1, driving of batch B).

    ``scale`` overrides the movement-scale factor (e.g. computed once per clip with
    :func:`ml_core.geometry.movement_scale`; otherwise it is computed from the first item of each batch).
    """
    out = dict(kp_driving)
    if not use_relative_movement:
        return out
    if scale is None and adapt_movement_scale:
        scale = movement_scale(first_values(kp_source), first_values(kp_driving_initial))
    elif scale is None:
        scale = 1.0
    out["value"] = (kp_driving["value"] - kp_driving_initial["value"]) * scale + kp_source["value"]
    if use_relative_jacobian and kp_driving.get("jacobian") is not None:
        jacobian_diff = torch.matmul(kp_driving["jacobian"], torch.inverse(kp_driving_initial["jacobian"]))
        out["jacobian"] = torch.matmul(jacobian_diff, kp_source["jacobian"])
    return out
