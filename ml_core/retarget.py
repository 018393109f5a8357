"""Retargeting math: from a motion clip to animation curves (numpy + scipy only, no torch, no bpy).

Everything Blender needs to turn keypoint trajectories into shape-key weights and bone transforms,
tested without Blender:

- :func:`remove_head_motion` - the clip's global head motion (a similarity per frame) separated from
  the expression; :func:`movement_scale` - the paper's movement-scale adaptation (convex-hull areas, from
  :mod:`ml_core.geometry`).
- :class:`Calibration` - each shape key's keypoint/Jacobian response measured on renders of the
  character; :func:`solve_weights` - per-frame bounded (weights in [0, 1]), regularised least squares, with its settings
  in :class:`SolveOptions` (the one set of defaults).
- :func:`resample` - clip samples (seconds) to scene frames; :func:`rdp_keep` - Ramer-Douglas-Peucker
  keyframe reduction whose linear interpolation stays within a tolerance of every original sample.
- :func:`polar_decompose` - Jacobian = rotation @ stretch, for bones.

Keypoints are in the networks' normalised image coordinates: x, y in [-1, 1], x right, y down. Angles
follow :attr:`ml_core.geometry.Similarity.angle`: positive turns +x towards +y, clockwise on screen.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import lsq_linear

from ml_core.errors import FommError
from ml_core.geometry import fit_similarity, fit_similarity_batch, movement_scale

Progress = Callable[[int, "int | None"], None]

CALIBRATION_FORMAT = "fomm-calibration"
CALIBRATION_VERSION = 2


# --------------------------------------------------------------------------------------------------
# Head motion
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadMotion:
    """Global head motion of each frame relative to the reference frame.

    ``scale`` [T] (1 = reference size), ``angle`` [T] radians (positive: clockwise on screen),
    ``rotation`` [T,2,2] (turns reference-frame offsets into frame-t offsets), ``translation`` [T,2]
    (keypoint centroid displacement, normalised image units).
    """

    scale: np.ndarray
    angle: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray


def remove_head_motion(
    values: np.ndarray, jacobians: np.ndarray | None = None, reference: int = 0
) -> tuple[np.ndarray, np.ndarray | None, HeadMotion]:
    """Align every frame's keypoints onto the reference frame's by a similarity transform.

    ``values`` [T,K,2], ``jacobians`` [T,K,2,2] or None. Returns the aligned values (the expression
    left once the head's rotation, translation and scale are removed), the aligned Jacobians
    (``s R J``: the local frames rotated and scaled the same way) and the removed :class:`HeadMotion`.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[-1] != 2 or len(values) == 0:
        raise FommError(f"keypoints must be [T,K,2] with T >= 1, got shape {values.shape}")
    if not 0 <= reference < len(values):
        raise FommError(f"reference frame {reference} is outside the clip's {len(values)} frames")
    ref = values[reference]
    scale, rot, trans = fit_similarity_batch(values, ref)
    aligned = scale[:, None, None] * np.einsum("tij,tkj->tki", rot, values) + trans[:, None, :]
    aligned_jac = None
    if jacobians is not None:
        jac = np.asarray(jacobians, dtype=np.float64)
        aligned_jac = scale[:, None, None, None] * np.einsum("tij,tkjl->tkil", rot, jac)
    head_rot = np.transpose(rot, (0, 2, 1))
    head = HeadMotion(
        scale=1.0 / scale,
        angle=np.arctan2(head_rot[:, 1, 0], head_rot[:, 0, 0]),
        rotation=head_rot,
        translation=values.mean(axis=1) - ref.mean(axis=0),
    )
    return aligned, aligned_jac, head


def relative_jacobians(jacobians: np.ndarray, reference_jacobians: np.ndarray) -> np.ndarray:
    """``J @ inv(J_ref)`` per keypoint (the paper's relative Jacobian); [...,K,2,2]."""
    ref_inv = _safe_inv(np.asarray(reference_jacobians, dtype=np.float64))
    return np.asarray(jacobians, dtype=np.float64) @ ref_inv


def _safe_inv(mats: np.ndarray) -> np.ndarray:
    det = mats[..., 0, 0] * mats[..., 1, 1] - mats[..., 0, 1] * mats[..., 1, 0]
    if np.any(np.abs(det) < 1e-8):
        raise FommError("a keypoint's Jacobian is singular in the reference frame; choose another reference frame")
    inv = np.empty_like(mats)
    inv[..., 0, 0] = mats[..., 1, 1]
    inv[..., 1, 1] = mats[..., 0, 0]
    inv[..., 0, 1] = -mats[..., 0, 1]
    inv[..., 1, 0] = -mats[..., 1, 0]
    return inv / det[..., None, None]


def polar_decompose(jacobians: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polar decomposition ``J = R @ S``: R a rotation (det +1), S symmetric (the stretch).

    Works on any [...,2,2] stack. For a reflection (det J < 0) R stays a rotation and S takes the
    negative eigenvalue, so ``R @ S`` still equals J.
    """
    jac = np.asarray(jacobians, dtype=np.float64)
    u, sig, vt = np.linalg.svd(jac)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    u = u.copy()
    u[..., :, 1] *= d[..., None]
    sig = sig.copy()
    sig[..., 1] *= d
    rot = u @ vt
    stretch = np.swapaxes(vt, -1, -2) @ (sig[..., :, None] * vt)
    return rot, stretch


def rotation_angle(rotations: np.ndarray) -> np.ndarray:
    """Angle (radians, positive clockwise on screen) of [...,2,2] rotation matrices."""
    rotations = np.asarray(rotations)
    return np.arctan2(rotations[..., 1, 0], rotations[..., 0, 0])


# --------------------------------------------------------------------------------------------------
# Calibration and per-frame solve
# --------------------------------------------------------------------------------------------------


def motion_features(
    values: np.ndarray,
    jacobians: np.ndarray | None,
    ref_values: np.ndarray,
    ref_jacobians: np.ndarray | None,
    jacobian_weight: float,
) -> np.ndarray:
    """Feature vectors [...,F] of keypoint motion against a reference: displacements (2K), then
    ``jacobian_weight * (J J_ref^-1 - I)`` (4K) when both sides have Jacobians and the weight is > 0."""
    disp = np.asarray(values, dtype=np.float64) - np.asarray(ref_values, dtype=np.float64)
    lead = disp.shape[:-2]
    parts = [disp.reshape(*lead, -1)]
    if jacobian_weight > 0 and jacobians is not None and ref_jacobians is not None:
        rel = relative_jacobians(jacobians, ref_jacobians) - np.eye(2)
        parts.append(jacobian_weight * rel.reshape(*lead, -1))
    return np.concatenate(parts, axis=-1)


def _align_onto(values: np.ndarray, jacobians: np.ndarray | None, target: np.ndarray):
    """Similarity-align each pose [N,K,2] (and its Jacobians) onto ``target`` [K,2]."""
    scale, rot, trans = fit_similarity_batch(values, target)
    out = scale[:, None, None] * np.einsum("nij,nkj->nki", rot, values) + trans[:, None, :]
    jac = None
    if jacobians is not None:
        jac = scale[:, None, None, None] * np.einsum("nij,nkjl->nkil", rot, jacobians)
    return out, jac


@dataclass
class Calibration:
    """How each shape key moves the detected keypoints of one character seen from one camera.

    ``neutral_values`` [K,2] / ``neutral_jacobians`` [K,2,2] are the detector's output on the neutral
    render; ``key_values`` [N,K,2] / ``key_jacobians`` [N,K,2,2] on the render with each key at 1.0.
    ``pose_values`` [P,2,K,2] (and ``pose_jacobians`` [P,2,K,2,2]) are optional nuisance renders: the
    neutral face turned by +/- a small angle out of the image plane (``pose_names``, e.g. yaw and pitch);
    their central differences enter the solve as unbounded columns, so that a nod or a turn of the
    performer's head is not mistaken for an expression. ``meta`` records what the calibration was made
    from (object, mesh state, model hashes, camera).
    """

    key_names: list[str]
    neutral_values: np.ndarray
    key_values: np.ndarray
    neutral_jacobians: np.ndarray | None = None
    key_jacobians: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    pose_names: list[str] = field(default_factory=list)
    pose_values: np.ndarray | None = None
    pose_jacobians: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.neutral_values = np.asarray(self.neutral_values, dtype=np.float64)
        self.key_values = np.asarray(self.key_values, dtype=np.float64)
        k = self.neutral_values.shape[0] if self.neutral_values.ndim == 2 else -1
        if self.neutral_values.shape != (k, 2) or self.key_values.shape != (len(self.key_names), k, 2):
            raise FommError(
                f"calibration shapes do not match: neutral {self.neutral_values.shape}, "
                f"keys {self.key_values.shape} for {len(self.key_names)} shape keys"
            )
        if (self.neutral_jacobians is None) != (self.key_jacobians is None):
            raise FommError("calibration has Jacobians for only some renders; calibrate again")
        if self.neutral_jacobians is not None:
            self.neutral_jacobians = np.asarray(self.neutral_jacobians, dtype=np.float64)
            self.key_jacobians = np.asarray(self.key_jacobians, dtype=np.float64)
        self.pose_names = list(self.pose_names)
        if self.pose_values is None:
            self.pose_values = np.zeros((0, 2, k, 2))
        self.pose_values = np.asarray(self.pose_values, dtype=np.float64)
        if self.pose_values.shape != (len(self.pose_names), 2, k, 2):
            raise FommError(
                f"calibration pose renders {self.pose_values.shape} do not match {len(self.pose_names)} poses"
            )
        if self.pose_jacobians is not None:
            self.pose_jacobians = np.asarray(self.pose_jacobians, dtype=np.float64)

    @property
    def num_kp(self) -> int:
        return int(self.neutral_values.shape[0])

    @property
    def has_jacobians(self) -> bool:
        return self.neutral_jacobians is not None

    def _features(self, values, jacobians, jacobian_weight: float, align: bool) -> np.ndarray:
        use_jac = jacobian_weight > 0 and self.has_jacobians and jacobians is not None
        jac = jacobians if use_jac else None
        if align:
            values, jac = _align_onto(values, jac, self.neutral_values)
        return motion_features(values, jac, self.neutral_values, self.neutral_jacobians, jacobian_weight)

    def basis(self, jacobian_weight: float = 0.0, *, align: bool = True) -> np.ndarray:
        """The response matrix A [F,N]: column n is key n's feature vector at weight 1.

        Each key's render is first aligned onto the neutral one by a similarity, exactly as the clip's
        frames are aligned onto its reference frame, so that both sides lose the same components (a key
        that shifts or turns the whole face keeps only what a head motion cannot explain). ``align=False``
        keeps the raw responses (for clips whose head motion is not removed).
        """
        return self._features(self.key_values, self.key_jacobians, jacobian_weight, align).T

    def pose_basis(self, jacobian_weight: float = 0.0, *, align: bool = True) -> np.ndarray:
        """Nuisance columns [F,P]: half the feature difference between each pose's + and - renders."""
        p = len(self.pose_names)
        if p == 0:
            return np.zeros((self.basis(jacobian_weight, align=align).shape[0], 0))
        k = self.num_kp
        jac = None
        if self.pose_jacobians is not None:
            jac = self.pose_jacobians.reshape(2 * p, k, 2, 2)
        feats = self._features(self.pose_values.reshape(2 * p, k, 2), jac, jacobian_weight, align)
        feats = feats.reshape(p, 2, -1)
        return ((feats[:, 0] - feats[:, 1]) / 2).T

    def response(self) -> dict[str, list[float]]:
        """Per shape key, how far (normalised image units) it moves each keypoint: for inspection."""
        disp = np.linalg.norm(self.key_values - self.neutral_values, axis=-1)
        rows = zip(self.key_names, disp, strict=True)
        return {name: [round(float(v), 5) for v in row] for name, row in rows}

    def weak_keys(self, threshold: float = 1e-3) -> list[str]:
        """Shape keys that move no keypoint by more than ``threshold``: the solve cannot see them."""
        disp = np.linalg.norm(self.key_values - self.neutral_values, axis=-1).max(axis=1)
        return [n for n, d in zip(self.key_names, disp, strict=True) if d < threshold]

    def save(self, path: str | os.PathLike) -> None:
        """Write as .npz (arrays + a JSON header) atomically."""
        from ml_core.fileio import atomic_path

        header = {
            "format": CALIBRATION_FORMAT,
            "version": CALIBRATION_VERSION,
            "key_names": list(self.key_names),
            "pose_names": list(self.pose_names),
            "meta": self.meta,
            "response": self.response(),
        }
        arrays = {"neutral_values": self.neutral_values, "key_values": self.key_values}
        arrays["pose_values"] = self.pose_values
        if self.has_jacobians:
            arrays["neutral_jacobians"] = self.neutral_jacobians
            arrays["key_jacobians"] = self.key_jacobians
            if self.pose_jacobians is not None:
                arrays["pose_jacobians"] = self.pose_jacobians
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                arrays = {k: data[k] for k in data.files if k != "header"}
        except FileNotFoundError:
            raise FommError(f"calibration file not found: {path}") from None
        except (OSError, ValueError, KeyError) as exc:
            raise FommError(f"{path} is not a calibration file ({exc}); calibrate again") from None
        if header.get("format") != CALIBRATION_FORMAT or header.get("version") != CALIBRATION_VERSION:
            raise FommError(f"{path} is not a version-{CALIBRATION_VERSION} calibration file; calibrate again")
        for name, arr in arrays.items():
            if not np.all(np.isfinite(arr)):
                raise FommError(f"calibration {path} has non-finite {name}; calibrate again")
        return cls(
            key_names=list(header["key_names"]),
            neutral_values=arrays["neutral_values"],
            key_values=arrays["key_values"],
            neutral_jacobians=arrays.get("neutral_jacobians"),
            key_jacobians=arrays.get("key_jacobians"),
            meta=header.get("meta", {}),
            pose_names=list(header.get("pose_names", [])),
            pose_values=arrays.get("pose_values"),
            pose_jacobians=arrays.get("pose_jacobians"),
        )


@dataclass(frozen=True)
class SolveOptions:
    """The settings of :func:`solve_weights`, with the one set of defaults: the Bake panel's properties
    (``scene.fomm``, same names but ``use_poses``) default to these, and the demo and benchmarks pass them.

    ``regularization`` (relative, see :func:`solve_bounded`) pulls weights towards 0 when the motion does not call
    for them; ``jacobian_weight`` weighs the keypoints' local rotation/stretch against their motion (0: positions
    only); ``adapt_scale``: the paper's movement-scale adaptation; ``remove_head``: solve expressions only (False for
    clips without head motion); ``auto_neutral``: re-choose the neutral sample (:func:`find_neutral`);
    ``use_poses``: the calibration's out-of-plane head poses as unbounded columns; ``smooth_sigma`` (samples): a
    Gaussian filter on the weights afterwards (0 = off, :func:`smooth_weights`).
    """

    regularization: float = 0.1
    jacobian_weight: float = 0.5
    adapt_scale: bool = True
    remove_head: bool = True
    auto_neutral: bool = True
    use_poses: bool = True
    smooth_sigma: float = 0.0


@dataclass(frozen=True)
class SolveResult:
    """``weights`` [T,N] in [0,1] (clip samples x calibration keys), the removed ``head`` motion, the
    per-frame relative ``residual`` (|A w - b| / |b|, 0 where the frame has no motion), the clip sample
    used as the neutral ``reference`` and the out-of-plane ``pose`` coefficients [T,P] (units of the
    calibration's pose angle)."""

    weights: np.ndarray
    head: HeadMotion
    residual: np.ndarray
    key_names: list[str]
    reference: int = 0
    pose: np.ndarray | None = None


def clip_features(
    calibration: Calibration,
    values: np.ndarray,
    jacobians: np.ndarray | None,
    reference: int,
    *,
    adapt_scale: bool = True,
    jacobian_weight: float = 0.0,
    remove_head: bool = True,
) -> tuple[np.ndarray, HeadMotion]:
    """Per-frame feature vectors [T,F] of the clip's expression, expressed in the calibration's frame.

    The head motion is removed (similarity onto the reference frame; measured but kept when
    ``remove_head`` is False), then the motion relative to the
    reference frame is rotated into the calibration's neutral pose and scaled by the paper's movement
    scale (hull areas of the calibration's neutral keypoints and the clip's reference keypoints).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[1:] != (calibration.num_kp, 2):
        raise FommError(
            f"the clip has {values.shape[1] if values.ndim == 3 else '?'} keypoints but the calibration has "
            f"{calibration.num_kp}: extract the clip and calibrate with the same model"
        )
    use_jac = jacobian_weight > 0 and jacobians is not None and calibration.has_jacobians
    aligned, aligned_jac, head = remove_head_motion(values, jacobians if use_jac else None, reference)
    if not remove_head:
        aligned = values
        aligned_jac = None if not use_jac else np.asarray(jacobians, dtype=np.float64)
    ref = aligned[reference]
    to_calib = fit_similarity(ref, calibration.neutral_values)
    rot = to_calib.rotation
    scale = movement_scale(calibration.neutral_values, ref) if adapt_scale else 1.0
    disp = (aligned - ref) @ rot.T * scale
    feats = [disp.reshape(len(values), -1)]
    if use_jac:
        rel = relative_jacobians(aligned_jac, aligned_jac[reference])
        rel = np.einsum("ij,tkjl,ml->tkim", rot, rel, rot) - np.eye(2)
        feats.append(jacobian_weight * rel.reshape(len(values), -1))
    return np.concatenate(feats, axis=1), head


def _ridge(basis: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    n = basis.shape[1]
    return np.linalg.solve(basis.T @ basis + lam * np.eye(n), basis.T @ targets.T).T


def _lambda(basis: np.ndarray, bounded: int, regularization: float) -> float:
    cols = basis[:, :bounded] if bounded else basis
    n = max(cols.shape[1], 1)
    return max(float(regularization), 0.0) * float((cols**2).sum() / n) + 1e-12


def solve_bounded(
    basis: np.ndarray,
    targets: np.ndarray,
    regularization: float = SolveOptions.regularization,
    *,
    free: int = 0,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Solve ``min |A w - b|^2 + lam |w|^2`` subject to ``0 <= w <= 1`` for every row b of ``targets``.

    ``basis`` A [F,N], ``targets`` [T,F] -> weights [T,N]. The last ``free`` columns are unbounded
    (nuisance terms such as head pose); the rest are bounded. ``regularization`` is relative: lam =
    regularization * mean squared norm of the bounded columns, so it does not depend on the features'
    units. Frames whose unconstrained ridge solution already lies in the box are solved in one
    vectorised step (it is then the bounded optimum too); the others go through scipy's bounded solver.
    """
    a = np.asarray(basis, dtype=np.float64)
    b = np.asarray(targets, dtype=np.float64)
    n = a.shape[1]
    if n == 0:
        return np.zeros((len(b), 0))
    nb = n - int(free)
    lam = _lambda(a, nb, regularization)
    weights = _ridge(a, b, lam)
    todo = np.flatnonzero(np.any((weights[:, :nb] < 0.0) | (weights[:, :nb] > 1.0), axis=1))
    if len(todo) == 0:
        return weights
    # the free columns P are eliminated exactly: for fixed bounded weights w their best value is
    # p = (P'P + lam)^-1 P'(b - A w), which leaves |M^(1/2) (A w - b)|^2 + lam |w|^2 with
    # M = I - P (P'P + lam)^-1 P' (symmetric, eigenvalues in (0, 1]): a plain bounded problem in w
    bounded, extra = a[:, :nb], a[:, nb:]
    if free:
        inv = np.linalg.inv(extra.T @ extra + lam * np.eye(free))
        m = np.eye(a.shape[0]) - extra @ inv @ extra.T
        ev, vec = np.linalg.eigh(m)
        root = (vec * np.sqrt(np.clip(ev, 0.0, None))) @ vec.T
    else:
        root = np.eye(a.shape[0])
    a_aug = np.vstack([root @ bounded, np.sqrt(lam) * np.eye(nb)])
    zeros = np.zeros(nb)
    total = len(todo)
    step = max(1, total // 100)
    for i, t in enumerate(todo):
        if cancel is not None and i % step == 0 and cancel():
            raise KeyboardInterrupt
        res = lsq_linear(a_aug, np.concatenate([root @ b[t], zeros]), bounds=(0.0, 1.0), method="bvls")
        w = res.x if res.success else np.clip(weights[t, :nb], 0.0, 1.0)
        weights[t, :nb] = w
        if free:
            weights[t, nb:] = inv @ extra.T @ (b[t] - bounded @ w)
        if progress is not None and (i % step == 0 or i == total - 1):
            progress(i + 1, total)
    weights[:, :nb] = np.clip(weights[:, :nb], 0.0, 1.0)
    return weights


def neutral_cost(weights: np.ndarray) -> np.ndarray:
    """How far each sample sits above the others, key by key: ``cost[n] = sum_k sum_t max(0, w[n,k] - w[t,k])``
    for ``weights`` [T,K] -> [T].

    A truly neutral sample is at (or near) the bottom of every key, so its cost is (near) the least. Negative
    weights earn nothing: they cannot hide an open jaw behind the cross-talk of another key (a pucker read as a
    negative smile), as a plain sum would. The cost does not change when a key's weights are all shifted by the
    same amount, so relative weights may be measured from any reference. Per key: sort, then prefix sums
    (O(T log T) each; no T x T matrix)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be [T,K], got shape {w.shape}")
    t = w.shape[0]
    if t == 0 or w.shape[1] == 0:
        return np.zeros(t)
    keys = np.ascontiguousarray(w.T)  # [K,T]: sort along contiguous rows
    order = np.argsort(keys, axis=1)
    ranked = np.take_along_axis(keys, order, axis=1)
    # the sample at rank i is above the i+1 samples ranked 0..i (itself and ties add 0)
    above = np.arange(1, t + 1) * ranked - np.cumsum(ranked, axis=1)
    per_key = np.empty_like(above)
    np.put_along_axis(per_key, order, above, axis=1)
    return per_key.sum(axis=0)


def find_neutral(basis: np.ndarray, targets: np.ndarray, free: int, regularization: float, smooth: float = 1.0) -> int:
    """The clip sample that looks most neutral through the calibration: the least :func:`neutral_cost` of its
    unconstrained ridge key weights (the bounded columns only; relative weights are negative where a sample shows
    less expression than the reference). ``smooth`` (samples) low-passes the cost so that one noisy sample
    cannot win."""
    nb = basis.shape[1] - int(free)
    u = _ridge(basis, targets, _lambda(basis, nb, regularization))[:, :nb]
    score = neutral_cost(u)
    if smooth > 0 and len(score) > 2:
        score = gaussian_filter1d(score, smooth, mode="nearest")
    return int(np.argmin(score))


def smooth_weights(weights: np.ndarray, sigma: float) -> np.ndarray:
    """Weights [T,N] low-passed along time by a Gaussian of ``sigma`` samples and kept in [0, 1] (0: unchanged)."""
    if sigma <= 0 or len(weights) < 2:
        return weights
    return np.clip(gaussian_filter1d(weights, sigma, axis=0, mode="nearest"), 0.0, 1.0)


def solve_weights(
    calibration: Calibration,
    values: np.ndarray,
    jacobians: np.ndarray | None = None,
    reference: int = 0,
    *,
    keys: Sequence[str] | None = None,
    options: SolveOptions | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    **settings: float | bool,
) -> SolveResult:
    """Shape-key weights per clip sample from keypoint motion, through the calibration.

    ``options`` (default :class:`SolveOptions()`) are the solve's settings; keyword ``settings`` override single
    ones by name (``regularization=1e-8``; an unknown name is a TypeError). ``keys`` restricts the solve to some
    calibrated keys (default all). With ``auto_neutral`` the reference (neutral) sample is re-chosen as the one
    the calibration finds most neutral (:func:`find_neutral`), since relative motion needs a neutral reference and
    the clip's may not be one. ``remove_head=False`` is for clips without head motion (a fixed camera on a fixed
    head): the solve is then exactly linear. See :func:`clip_features` and :func:`solve_bounded` for the steps.
    """
    opts = replace(options or SolveOptions(), **settings)
    regularization, jacobian_weight, remove_head = opts.regularization, opts.jacobian_weight, opts.remove_head
    names = list(calibration.key_names) if keys is None else list(keys)
    missing = [k for k in names if k not in calibration.key_names]
    if missing:
        raise FommError(f"shape keys {missing} are not in the calibration; calibrate again")
    if not names:
        raise FommError("no shape keys selected to bake: select at least one")
    cols = [calibration.key_names.index(k) for k in names]

    def features(ref: int):
        return clip_features(
            calibration,
            values,
            jacobians,
            ref,
            adapt_scale=opts.adapt_scale,
            jacobian_weight=jacobian_weight,
            remove_head=remove_head,
        )

    feats, head = features(reference)
    used_jw = jacobian_weight if feats.shape[1] > 2 * calibration.num_kp else 0.0
    basis = calibration.basis(used_jw, align=remove_head)[:, cols]
    free = 0
    if opts.use_poses and calibration.pose_names:
        poses = calibration.pose_basis(used_jw, align=remove_head)
        basis = np.concatenate([basis, poses], axis=1)
        free = poses.shape[1]
    if opts.auto_neutral and len(feats) > 1:
        new_ref = find_neutral(basis, feats, free, regularization)
        if new_ref != reference:
            reference = new_ref
            feats, head = features(reference)
    solved = solve_bounded(basis, feats, regularization, free=free, progress=progress, cancel=cancel)
    weights = solved[:, : len(names)]
    if opts.smooth_sigma > 0 and len(weights) > 1:
        weights = smooth_weights(weights, opts.smooth_sigma)
        solved = np.concatenate([weights, solved[:, len(names) :]], axis=1)
    norm = np.linalg.norm(feats, axis=1)
    err = np.linalg.norm(solved @ basis.T - feats, axis=1)
    residual = np.where(norm > 1e-9, err / np.maximum(norm, 1e-9), 0.0)
    return SolveResult(
        weights=weights,
        head=head,
        residual=residual,
        key_names=names,
        reference=int(reference),
        pose=solved[:, len(names) :],
    )


def manual_weights(
    values: np.ndarray,
    reference: int,
    mapping: Sequence[tuple[int, int, float]],
    *,
    remove_head: bool = True,
) -> np.ndarray:
    """The manual alternative to calibration: weight = clip(gain * displacement, 0, 1).

    ``mapping`` holds one ``(keypoint, axis, gain)`` per output curve: axis 0 = x (right), 1 = y (down);
    displacement is relative to the reference frame, in normalised image units, after head-motion
    removal if asked. Returns [T, len(mapping)].
    """
    values = np.asarray(values, dtype=np.float64)
    if remove_head:
        values, _, _ = remove_head_motion(values, None, reference)
    disp = values - values[reference]
    k = values.shape[1]
    out = np.zeros((len(values), len(mapping)))
    for i, (kp, axis, gain) in enumerate(mapping):
        if not 0 <= kp < k or axis not in (0, 1):
            raise FommError(f"manual mapping {i + 1}: keypoint {kp} axis {axis} does not exist (clip has {k})")
        out[:, i] = gain * disp[:, kp, axis]
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Time: resampling and keyframe reduction
# --------------------------------------------------------------------------------------------------


def resample(times: np.ndarray, values: np.ndarray, fps: float, start_frame: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Linearly resample samples at ``times`` (seconds, increasing) to scene frames at ``fps``.

    ``values`` [T,...]. Returns ``frames`` [M] (integers from ``start_frame``, one per scene frame over
    the clip's duration) and the values there [M,...]. A clip at the scene's rate comes back unchanged.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if len(times) != len(values) or len(times) == 0:
        raise FommError("resample: times and values must be non-empty and of the same length")
    if fps <= 0:
        raise FommError(f"scene frame rate {fps} is not positive")
    if np.any(np.diff(times) <= 0):
        raise FommError("resample: sample times must increase")
    t0 = times[0]
    count = int(np.floor((times[-1] - t0) * fps + 1e-6)) + 1
    frames = np.arange(count) + int(start_frame)
    t = t0 + np.arange(count) / fps
    hi = np.clip(np.searchsorted(times, t, side="left"), 1, max(len(times) - 1, 1))
    if len(times) == 1:
        return frames, np.repeat(values[:1], count, axis=0)
    lo = hi - 1
    span = times[hi] - times[lo]
    alpha = np.clip((t - times[lo]) / span, 0.0, 1.0)
    alpha = alpha.reshape(-1, *([1] * (values.ndim - 1)))
    return frames, values[lo] * (1.0 - alpha) + values[hi] * alpha


def rdp_keep(x: np.ndarray, y: np.ndarray, tolerance: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on every column of ``y`` [n,C] (or [n]) at once: a keep mask of ``y``'s shape.

    Linear interpolation through the kept samples stays within ``tolerance`` of every original sample
    (vertical error, the one that matters for animation curves). First and last samples are always kept;
    ``tolerance <= 0`` keeps everything. Each round splits every segment still too far from its chord at
    its worst sample (the recursive algorithm's result, computed breadth-first and vectorised).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    one = y.ndim == 1
    y2 = y[:, None] if one else y
    n, c = y2.shape
    keep = np.ones((n, c), dtype=bool)
    if n <= 2 or tolerance <= 0:
        return keep[:, 0] if one else keep
    keep[1:-1] = False
    # all columns end to end; every column's first and last samples stay kept, so no segment crosses
    flat_y = y2.T.ravel()
    flat_x = np.tile(x, c)
    flat_keep = keep.T.ravel().copy()
    lo = np.arange(c) * n
    hi = lo + n - 1
    while len(lo):
        inner = hi - lo - 1
        live = inner > 0
        lo, hi, inner = lo[live], hi[live], inner[live]
        if not len(lo):
            break
        starts = np.cumsum(inner) - inner
        seg = np.repeat(np.arange(len(lo)), inner)
        idx = lo[seg] + 1 + (np.arange(int(inner.sum())) - starts[seg])
        a, b = lo[seg], hi[seg]
        line = flat_y[a] + (flat_y[b] - flat_y[a]) * (flat_x[idx] - flat_x[a]) / (flat_x[b] - flat_x[a])
        err = np.abs(flat_y[idx] - line)
        worst = np.maximum.reduceat(err, starts)
        hits = np.flatnonzero(err == worst[seg])  # the first worst sample per segment, as recursion picks
        first = hits[np.searchsorted(seg[hits], np.arange(len(lo)))]
        split = worst > tolerance
        k = idx[first[split]]
        flat_keep[k] = True
        lo, hi = np.concatenate([lo[split], k]), np.concatenate([k, hi[split]])
    keep = flat_keep.reshape(c, n).T
    return keep[:, 0] if one else keep
