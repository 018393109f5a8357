"""Bake from examples: learn, from a few frames the animator posed, a map from the clip's motion to any channel.

numpy only (no torch, no bpy). The animator keys the target (shape keys, bones, custom properties) on a handful of
telling frames of the performance; :func:`solve_examples` learns from the clip's motion at those frames a mapping to
every keyed channel and predicts every frame.

- Features (:func:`example_features`): the quantities calibration uses (:mod:`ml_core.retarget`): the keypoints'
  displacements after the head's motion is removed, the relative Jacobians ``J J_ref^-1 - I``, and the head pose
  (angle, log scale, translation) for head channels. The expression is whitened over the whole clip (unlabelled
  frames included) with shrinkage (:func:`whiten`): every direction the face really moves in weighs alike, however
  few pixels it moves, and directions with hardly any variance (detector noise) are damped. The head pose is
  standardised; each block is scaled to unit total variance, so no block wins by its size.
- Models: ridge regression in dual form with an unpenalised intercept: a linear kernel with a fixed relative
  regularisation (:data:`REGULARISATION`; with a handful of examples, choosing it by leave-one-out picks noise), and
  from :data:`RBF_MIN_EXAMPLES` examples on a Gaussian (RBF) kernel whose width and regularisation are chosen by
  exact leave-one-out error (closed form: ``e_i / (1 - H_ii)`` with ``H = 11'/n + Kc (Kc + lam I)^-1``, ``Kc`` the
  centred kernel), taken only when it beats the linear map by a margin.
- A prior (optional): where another solve already predicts a channel on every frame (calibration by rendering for
  shape keys), the examples can teach what it misses instead of the whole map: the same ridge learns the residual
  ``y - prior`` and the prediction is ``prior + residual``. Whether the prior is used is decided once per solve by
  the exact leave-one-out error over the channels it covers (each normalised by its examples' spread): a prior that
  does not predict the held-out examples better is dropped, so a poor calibration cannot make the bake worse than
  the examples alone (measured on synthetic heads, see bench/RESULTS.md).
- Outputs: clipped to each channel's bounds (shape-key slider range, a property's limits); quaternion channels are
  put in one hemisphere before the fit and normalised after it; angles are fitted as they are keyed (unwrapped by
  the caller). Each channel's leave-one-out error is reported, so the animator sees where an example is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ml_core.errors import FommError
from ml_core.retarget import motion_features, remove_head_motion

#: The fewest examples the solve accepts (with fewer, leave-one-out cannot choose anything).
MIN_EXAMPLES = 3
#: A channel whose leave-one-out RMS error is above this fraction of its examples' spread is not explained.
UNEXPLAINED_RATIO = 0.8
#: Shrinkage of the expression's whitening, relative to its total variance over the clip: directions that vary less
#: than this are damped rather than blown up (measured on synthetic heads, see bench/RESULTS.md).
WHITENING = 0.03
#: Feature sets: the expression for face channels; the expression and the head pose for head channels.
FEATURE_SETS: tuple[tuple[str, ...], ...] = (("expression",), ("expression", "head"))
#: The linear map's ridge penalty, relative to the centred kernel's mean diagonal (fixed, see the module's notes).
REGULARISATION = 0.01
_REGULARISATION = np.logspace(-4, 2, 13)  # the RBF kernel's candidates
_WIDTHS = (0.5, 1.0, 2.0, 4.0)
#: The RBF kernel replaces the linear map only when its leave-one-out error is this much lower: with a handful of
#: examples, the least of many noisy errors otherwise wins by chance.
MARGIN = 0.8
#: The RBF kernel is a candidate from this many examples on (with fewer its leave-one-out error is too noisy to
#: choose it over the linear map: measured on synthetic heads, see bench/RESULTS.md).
RBF_MIN_EXAMPLES = 12


def example_features(
    values: np.ndarray,
    jacobians: np.ndarray | None,
    reference: int,
    *,
    jacobian_weight: float = 0.5,
    remove_head: bool = True,
) -> dict[str, np.ndarray]:
    """Feature blocks per clip sample: ``expression`` [T,F] (keypoint displacements and relative Jacobians
    against the reference sample, head motion removed unless ``remove_head`` is False) and ``head`` [T,4]
    (unwrapped roll angle, log scale, translation x, y of the head's similarity motion)."""
    values = np.asarray(values, dtype=np.float64)
    aligned, aligned_jac, head = remove_head_motion(values, jacobians, reference)
    if not remove_head:
        aligned = values
        aligned_jac = None if jacobians is None else np.asarray(jacobians, dtype=np.float64)
    ref_jac = None if aligned_jac is None else aligned_jac[reference]
    expression = motion_features(aligned, aligned_jac, aligned[reference], ref_jac, jacobian_weight)
    pose = np.column_stack([np.unwrap(head.angle), np.log(head.scale), head.translation])
    return {"expression": expression, "head": pose}


def standardise(block: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit variance over the frames (constant columns dropped), the block then scaled to
    unit total variance (divided by the square root of its column count)."""
    block = np.asarray(block, dtype=np.float64)
    std = block.std(axis=0)
    keep = std > 1e-12 * max(1.0, float(np.abs(block).max(initial=0.0)))
    if not np.any(keep):
        return np.zeros((len(block), 0))
    z = (block[:, keep] - block[:, keep].mean(axis=0)) / std[keep]
    return z / np.sqrt(z.shape[1])


def whiten(block: np.ndarray, shrinkage: float = WHITENING) -> np.ndarray:
    """The block's principal-component scores over all the clip's samples [T,k], each divided by
    ``sqrt(variance + shrinkage * total variance)`` (columns standardised first, constant ones dropped), then scaled
    to unit total variance.

    A shrunk Mahalanobis metric: the clip's own covariance, labelled frames or not, tells which directions the face
    really moves in; a small motion (a brow) then counts as much as a large one (the jaw), and the few examples need
    not find it among the detector's noise, whose directions hardly vary and stay damped."""
    z = standardise(block)
    if z.shape[1] == 0:
        return z
    z = z - z.mean(axis=0)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    var = s**2 / len(z)
    keep = var > 1e-12 * var.sum()
    scores = u[:, keep] * s[keep] / np.sqrt(var[keep] + shrinkage * var.sum())
    return scores / np.sqrt(max(float((scores**2).sum(axis=1).mean()), 1e-24))


def representations(blocks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The expression whitened over the clip (:func:`whiten`), the other blocks standardised."""
    return {name: whiten(b) if name == "expression" else standardise(b) for name, b in blocks.items()}


@dataclass(frozen=True)
class ChannelFit:
    """How one channel was learned: the model chosen by leave-one-out and its errors (channel units)."""

    name: str
    model: str  # "linear" or "rbf"
    features: tuple[str, ...]
    regularization: float  # relative to the centred kernel's mean diagonal
    width: float | None  # RBF width relative to the examples' median distance
    loo_rms: float
    loo_max: float
    spread: float  # standard deviation of the channel's example values
    prior: bool = False  # learned as a correction of the prior (see solve_examples)

    @property
    def explained(self) -> bool:
        """False when the others predict each example hardly better than their mean."""
        return self.loo_rms <= UNEXPLAINED_RATIO * self.spread

    def describe(self) -> str:
        return f"{self.name}: each example predicted within {self.loo_max:.3g} by the others"


@dataclass
class ExampleSolve:
    """``values`` [T,C]: every sample of every channel; ``fits``: one :class:`ChannelFit` per channel."""

    values: np.ndarray
    fits: list[ChannelFit]
    prior_used: bool = False

    def unexplained(self) -> list[ChannelFit]:
        return [f for f in self.fits if not f.explained]


def _kernels(z: np.ndarray, rows: np.ndarray, kernels: str) -> list[tuple[str, float | None, np.ndarray]]:
    """(model, width, K [T,n]) between every sample and the examples, for the linear and RBF kernels asked for."""
    x = z[rows]
    out: list[tuple[str, float | None, np.ndarray]] = []
    if kernels != "rbf":
        out.append(("linear", None, z @ x.T))
    if kernels == "linear" or (kernels == "auto" and len(rows) < RBF_MIN_EXAMPLES):
        return out
    d2 = np.maximum((z * z).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * z @ x.T, 0.0)
    dx = d2[rows]
    med = float(np.median(dx[np.triu_indices(len(rows), 1)])) if len(rows) > 1 else 0.0
    if med > 1e-12:
        for w in _WIDTHS:
            out.append(("rbf", w, np.exp(-d2 / (2.0 * w * w * med))))
    return out


def _centred(k_all: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The examples' centred kernel [n,n] and every sample's centred kernel row [T,n] (feature-space centring)."""
    k = k_all[rows]
    col = k.mean(axis=0)
    total = k.mean()
    kc = k - col[None, :] - col[:, None] + total
    kt = k_all - k_all.mean(axis=1, keepdims=True) - col[None, :] + total
    return 0.5 * (kc + kc.T), kt


def loo_residuals(kc: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Exact leave-one-out residuals [n,C] of kernel ridge with an unpenalised intercept (closed form)."""
    n = len(y)
    s, u = np.linalg.eigh(kc)
    s = np.clip(s, 0.0, None)
    shrink = s / (s + lam)
    hat = (u * shrink) @ u.T + 1.0 / n
    fitted = hat @ y
    denom = np.maximum(1.0 - np.diag(hat), 1e-9)
    return (y - fitted) / denom[:, None]


def _fit_predict(kc: np.ndarray, kt: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    mean = y.mean(axis=0)
    alpha = np.linalg.solve(kc + lam * np.eye(len(kc)), y - mean)
    return mean + kt @ alpha


def _check_examples(
    rows: np.ndarray, targets: np.ndarray, names: Sequence[str], n_samples: int, constant_ok: np.ndarray
) -> None:
    if targets.ndim != 2 or targets.shape != (len(rows), len(names)):
        raise FommError(f"examples {targets.shape} do not match {len(rows)} frames x {len(names)} channels")
    if len(rows) < MIN_EXAMPLES:
        raise FommError(
            f"{len(rows)} example frame(s) but the solve needs at least {MIN_EXAMPLES}: "
            "key the target on more frames of the performance"
        )
    if np.any(rows < 0) or np.any(rows >= n_samples):
        raise FommError(f"an example lies outside the clip's {n_samples} samples")
    if len(set(rows.tolist())) != len(rows):
        raise FommError("two examples fall on the same clip sample: keep one key per frame")
    if not np.all(np.isfinite(targets)):
        raise FommError("an example value is not a finite number")
    for i, name in enumerate(names):
        if np.ptp(targets[:, i]) <= 1e-9 and not constant_ok[i]:
            raise FommError(
                f"'{name}' is keyed with the same value {targets[0, i]:.4g} on every example: "
                "pose it differently on some frames, or delete its keys"
            )


def quaternion_hemisphere(quats: np.ndarray) -> np.ndarray:
    """[n,4] unit quaternions flipped (q and -q are one rotation) onto the side of their mean axis."""
    q = np.asarray(quats, dtype=np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    # principal eigenvector of sum q q': the average rotation's axis, whatever the signs
    _, vec = np.linalg.eigh(q.T @ q)
    axis = vec[:, -1] * (1.0 if vec[0, -1] >= 0 else -1.0)  # w >= 0 on the axis: near the rest pose, w > 0
    return np.where((q @ axis)[:, None] < 0, -q, q)


def _select_models(
    std: dict[str, np.ndarray], rows: np.ndarray, targets: np.ndarray, kernels: str, head_mask: np.ndarray
) -> tuple[dict[tuple, tuple[np.ndarray, np.ndarray]], list[tuple]]:
    """Every candidate (feature set, kernel, width, regularisation) scored by its exact leave-one-out error; per
    channel the best one allowed to it. Returns the centred kernels by (feature set, model, width) and, per channel,
    ``(feature set, model, width, reg, lam, residuals)`` (``()`` where none was allowed)."""
    cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    best_mse = np.full(targets.shape[1], np.inf)
    best: list[tuple] = [()] * targets.shape[1]
    for fset in FEATURE_SETS:
        parts = [std[b] for b in fset if b in std and std[b].shape[1]]
        if not parts or len(parts) != len(fset):
            continue
        z = np.concatenate(parts, axis=1) / np.sqrt(len(parts))
        for model, width, k_all in _kernels(z, rows, kernels):
            kc, kt = _centred(k_all, rows)
            cache[(fset, model, width)] = (kc, kt)
            allowed = head_mask if "head" in fset else ~head_mask
            scale = max(float(np.trace(kc)) / len(kc), 1e-12)
            for reg in (REGULARISATION,) if model == "linear" else _REGULARISATION:
                res = loo_residuals(kc, targets, float(reg) * scale)
                mse = (res**2).mean(axis=0)
                # ties keep the earlier, simpler candidate; a richer one must win by the margin
                plain = model == "linear"
                better = allowed & (mse < best_mse * (0.999 if plain else MARGIN))
                for c in np.flatnonzero(better):
                    best[c] = (fset, model, width, float(reg), float(reg) * scale, res[:, c])
                best_mse = np.where(better, mse, best_mse)
    return cache, best


def _predict_channels(
    names: Sequence[str],
    rows: np.ndarray,
    targets: np.ndarray,
    cache: dict[tuple, tuple[np.ndarray, np.ndarray]],
    best: list[tuple],
    lo: np.ndarray,
    hi: np.ndarray,
    offset: np.ndarray,
    from_prior: np.ndarray,
) -> tuple[np.ndarray, list[ChannelFit]]:
    """Each channel's chosen model fitted on all examples and evaluated on every sample [T,C] (constant channels keep
    their value), with its fit report (leave-one-out errors bounded as the bake is). ``offset`` [T,C]: the prior the
    models were fitted as corrections of (``best``'s residuals are those of ``targets - offset[rows]``; zero where
    there is none); ``from_prior`` [C] marks the channels that have one."""
    values = np.zeros(offset.shape)
    fits: list[ChannelFit] = []
    for c, name in enumerate(names):
        y = targets[:, c]
        if np.ptp(y) <= 1e-9:
            values[:, c] = y[0]
            fits.append(ChannelFit(name, "constant", (), 0.0, None, 0.0, 0.0, 0.0))
            continue
        fset, model, width, reg, lam, res = best[c]
        kc, kt = cache[(fset, model, width)]
        base = offset[:, c]
        values[:, c] = base + _fit_predict(kc, kt, (y - base[rows])[:, None], lam)[:, 0]
        # what the others predict (the prior at the held-out frame plus the correction learned without it), bounded
        # as the bake is: the residual of y - prior is the residual of y
        held_out = np.clip(y - res, lo[c], hi[c]) - y
        fits.append(
            ChannelFit(
                name=name,
                model=model,
                features=tuple(fset),
                regularization=reg,
                width=width,
                loo_rms=float(np.sqrt((held_out**2).mean())),
                loo_max=float(np.abs(held_out).max()),
                spread=float(y.std()),
                prior=bool(from_prior[c]),
            )
        )
    return values, fits


def solve_examples(
    blocks: dict[str, np.ndarray],
    rows: Sequence[int] | np.ndarray,
    targets: np.ndarray,
    names: Sequence[str],
    *,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    quaternions: Sequence[Sequence[int]] = (),
    constant_ok: Sequence[bool] | None = None,
    kernels: str = "auto",
    head: Sequence[bool] | None = None,
    prior: np.ndarray | None = None,
) -> ExampleSolve:
    """Learn each channel from the examples and predict every sample.

    ``blocks``: feature blocks [T,*] (see :func:`example_features`); ``rows`` [n]: the samples the examples sit on;
    ``targets`` [n,C]: the keyed values there; ``names`` [C]. ``lower``/``upper`` [C] bound the outputs (NaN or
    +/-inf for none). ``quaternions``: groups of 4 channel indices (w, x, y, z) fitted in one hemisphere and
    normalised per sample. A channel keyed with one value everywhere is refused unless ``constant_ok`` [C] says
    otherwise (the unmoved components of a bone's keyed rotation, say); it then keeps that value. ``kernels``:
    "linear", "rbf", or "auto" (linear, and RBF too from :data:`RBF_MIN_EXAMPLES` examples on). ``head`` [C]
    marks head channels (the head bone, the object's transform): they learn from the expression and the head pose,
    the others from the expression alone. ``prior`` [T,C] (optional): another solve's prediction of each channel on
    every sample (NaN columns where it has none, e.g. calibration by rendering for the shape keys): the examples then
    learn its error, if that predicts the held-out examples better than learning the channels from scratch
    (``ExampleSolve.prior_used``; module notes). Raises
    :class:`FommError` for too few examples, duplicates, non-finite values, refused constant channels.
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    targets = np.asarray(targets, dtype=np.float64)
    n_samples = len(next(iter(blocks.values())))
    ok = np.zeros(len(names), bool) if constant_ok is None else np.asarray(constant_ok, bool)
    _check_examples(rows, targets, names, n_samples, ok)
    targets = targets.copy()
    for group in quaternions:
        targets[:, list(group)] = quaternion_hemisphere(targets[:, list(group)])

    std = representations(blocks)
    lo = np.full(len(names), -np.inf) if lower is None else np.nan_to_num(np.asarray(lower, float), nan=-np.inf)
    hi = np.full(len(names), np.inf) if upper is None else np.nan_to_num(np.asarray(upper, float), nan=np.inf)
    head_mask = np.zeros(len(names), bool) if head is None else np.asarray(head, bool)
    cache, best = _select_models(std, rows, targets, kernels, head_mask)
    if not cache:
        raise FommError("the clip's motion is flat: no feature changes over the clip; extract it again")
    covered = _prior_columns(prior, n_samples, len(names), np.ptp(targets, axis=0) > 1e-9, quaternions)
    offset = np.zeros((n_samples, len(names)))
    if covered.any():
        offset_p = np.where(covered[None, :], np.nan_to_num(np.asarray(prior, np.float64)), 0.0)
        _, best_p = _select_models(std, rows, targets - offset_p[rows], kernels, head_mask)
        if _loo_score(best_p, targets, covered) < _loo_score(best, targets, covered):
            offset, best = offset_p, best_p
        else:
            covered = np.zeros_like(covered)
    values, fits = _predict_channels(names, rows, targets, cache, best, lo, hi, offset, covered)
    for group in quaternions:
        g = list(group)
        values[:, g] /= np.maximum(np.linalg.norm(values[:, g], axis=1, keepdims=True), 1e-12)
    values = np.clip(values, lo, hi)
    return ExampleSolve(values=values, fits=fits, prior_used=bool(covered.any()))


def _prior_columns(
    prior: np.ndarray | None,
    n_samples: int,
    n_channels: int,
    varies: np.ndarray,
    quaternions: Sequence[Sequence[int]],
) -> np.ndarray:
    """[C] bool: the channels the prior predicts on every sample (finite everywhere), keyed with more than one value
    and not part of a quaternion."""
    if prior is None:
        return np.zeros(n_channels, bool)
    p = np.asarray(prior, dtype=np.float64)
    if p.shape != (n_samples, n_channels):
        raise FommError(f"the prior {p.shape} does not match {n_samples} samples x {n_channels} channels")
    covered = np.all(np.isfinite(p), axis=0) & varies
    for group in quaternions:
        covered[list(group)] = False
    return covered


def _loo_score(best: list[tuple], targets: np.ndarray, columns: np.ndarray) -> float:
    """Mean over ``columns`` of each channel's leave-one-out mean squared error over its examples' variance."""
    scores = [
        float(np.mean(best[c][5] ** 2)) / max(float(targets[:, c].var()), 1e-18)
        for c in np.flatnonzero(columns)
        if best[c]
    ]
    return float(np.mean(scores)) if scores else np.inf


def spread_frames(poses: np.ndarray, count: int) -> np.ndarray:
    """Frames an animator would pick as examples from ``poses`` [T,C] (what the face does on each frame): the most
    neutral one (least summed value) first, then each time the frame farthest from all those picked. Sorted."""
    poses = np.asarray(poses, dtype=np.float64)
    picked = [int(np.argmin(poses.sum(axis=1)))]
    dist = np.linalg.norm(poses - poses[picked[0]], axis=1)
    while len(picked) < min(count, len(poses)):
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(poses - poses[nxt], axis=1))
    return np.sort(np.asarray(picked, dtype=np.int64))


def peak_frames(poses: np.ndarray, count: int, *, min_gap: int = 4, near_peak: float = 0.8) -> np.ndarray:
    """Frames an animator picks by looking at the performer, from ``poses`` [T,C] (what the face does on each
    frame): the most neutral one (least summed value), then the frame where each channel peaks (the channels of
    widest range first; a channel already near its peak, at ``near_peak`` of its range, on a picked frame is
    skipped: raising both brows is one example), none within ``min_gap`` frames of another; any left to ``count``
    as :func:`spread_frames` picks them (the frame farthest from those picked). Sorted."""
    poses = np.asarray(poses, dtype=np.float64)
    count = min(count, len(poses))
    picked = [int(np.argmin(poses.sum(axis=1)))]

    def free(t: int) -> bool:
        return all(abs(t - p) >= min_gap for p in picked)

    low, span = poses.min(axis=0), np.ptp(poses, axis=0)
    for c in np.argsort(-span, kind="stable"):
        if len(picked) >= count or span[c] <= 1e-12:
            continue
        if poses[picked, c].max() >= low[c] + near_peak * span[c]:
            continue
        frame = next((int(t) for t in np.argsort(-poses[:, c], kind="stable") if free(int(t))), None)
        if frame is not None:
            picked.append(frame)
    dist = np.min([np.linalg.norm(poses - poses[p], axis=1) for p in picked], axis=0)
    while len(picked) < count:
        order = np.argsort(-dist, kind="stable")
        frame = next((int(t) for t in order if free(int(t))), int(order[0]))
        picked.append(frame)
        dist = np.minimum(dist, np.linalg.norm(poses - poses[frame], axis=1))
    return np.sort(np.asarray(picked, dtype=np.int64))


__all__ = [
    "MIN_EXAMPLES",
    "REGULARISATION",
    "UNEXPLAINED_RATIO",
    "WHITENING",
    "ChannelFit",
    "ExampleSolve",
    "example_features",
    "loo_residuals",
    "peak_frames",
    "quaternion_hemisphere",
    "solve_examples",
    "spread_frames",
    "standardise",
    "whiten",
]
