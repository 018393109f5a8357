"""Point-set geometry shared by extraction and retargeting (numpy + scipy only, no torch).

Keypoints are in the networks' normalised image coordinates: x, y in [-1, 1], x to the right, y down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError


@dataclass(frozen=True)
class Similarity:
    """``dst ~= scale * src @ rotation.T + translation`` (2-D)."""

    scale: float
    rotation: np.ndarray  # [2, 2], det +1
    translation: np.ndarray  # [2]

    @property
    def angle(self) -> float:
        """Rotation angle in radians (counter-clockwise in x-right/y-up terms; clockwise on screen)."""
        return float(np.arctan2(self.rotation[1, 0], self.rotation[0, 0]))

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def inverse(self) -> Similarity:
        rot_t = self.rotation.T
        return Similarity(1.0 / self.scale, rot_t, -(rot_t @ self.translation) / self.scale)


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity taking ``src`` [N,2] onto ``dst`` [N,2] (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = w @ src
    mu_d = w @ dst
    s0 = src - mu_s
    d0 = dst - mu_d
    cov = (d0 * w[:, None]).T @ s0
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ fix @ vt
    var_s = float(w @ (s0**2).sum(axis=1))
    scale = float((sig * np.diag(fix)).sum() / var_s) if var_s > 1e-12 else 1.0
    trans = mu_d - scale * rot @ mu_s
    return Similarity(scale, rot, trans)


def fit_similarity_batch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`fit_similarity` for ``src``/``dst`` [T,N,2] (or one side [N,2]).

    Returns ``scale`` [T], ``rotation`` [T,2,2], ``translation`` [T,2].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src, dst = np.broadcast_arrays(src, dst)
    mu_s = src.mean(axis=1, keepdims=True)
    mu_d = dst.mean(axis=1, keepdims=True)
    s0 = src - mu_s
    d0 = dst - mu_d
    cov = np.einsum("tni,tnj->tij", d0, s0) / src.shape[1]
    u, sig, vt = np.linalg.svd(cov)
    det = np.sign(np.linalg.det(u @ vt))
    det[det == 0] = 1.0
    fix = np.zeros_like(cov)
    fix[:, 0, 0] = 1.0
    fix[:, 1, 1] = det
    rot = u @ fix @ vt
    var_s = (s0**2).sum(axis=2).mean(axis=1)
    scale = (sig[:, 0] + sig[:, 1] * det) / np.maximum(var_s, 1e-12)
    trans = mu_d[:, 0] - scale[:, None] * np.einsum("tij,tj->ti", rot, mu_s[:, 0])
    return scale, rot, trans


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the 2-D convex hull of ``points`` [N,2]; 0 for degenerate sets."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return 0.0
    try:
        return float(ConvexHull(pts).volume)  # in 2-D, "volume" is the area
    except QhullError:
        return 0.0


def movement_scale(source_values: np.ndarray, driving_initial: np.ndarray) -> float:
    """The paper's movement-scale adaptation: sqrt of the ratio of the keypoints' convex-hull areas (source over
    initial driving frame), [K,2] each; 1 where either hull is degenerate (area 1e-12 or less)."""
    area_d = convex_hull_area(driving_initial)
    area_s = convex_hull_area(source_values)
    if area_d <= 1e-12 or area_s <= 1e-12:
        return 1.0
    return float(np.sqrt(area_s / area_d))
