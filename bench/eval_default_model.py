"""Evaluate a model on held-out synthetic clips (characters not seen in training), side by side with a randomly
initialised network of the same configuration.

- Reconstruction L1 (the paper's protocol): every frame of a clip is regenerated from frame 0 as the source with
  the frame's own (absolute) keypoints; mean absolute error over pixels in [0, 1].
- Linear probe: per frame, features are the keypoints relative to the clip's reference frame (frame 0): value
  differences ``p_t - p_0`` and relative Jacobians ``J_t J_0^-1 - I``; targets are the ground-truth shape-key values
  and head rotation, also relative to frame 0. Ridge regression (numpy; features standardised, the penalty picked by
  2-fold cross-validation inside the fitting half) is fitted on half of the clips and scored (R^2) on the other half;
  the split is by identity (so by clip too: no character is in both halves).

Usage:
    .venv/bin/python bench/eval_default_model.py --data DIR [--checkpoint MODEL] [--json OUT.json]

``DIR`` is a synthetic set (``python -m tools.synth``): ``DIR/test/*.mp4`` + same-stem ``.npz`` ground truth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_core.errors import FommError  # noqa: E402
from ml_core.model import build_model, load_model  # noqa: E402
from ml_core.train.dataset import decode_video, find_clips, identity_of  # noqa: E402

TARGETS = {
    "jaw_open": ("curves", ["jaw_open"]),
    "blink": ("curves", ["blink_L", "blink_R"]),
    "smile": ("curves", ["smile_L", "smile_R"]),
    "brow": ("curves", ["brow_raise_L", "brow_raise_R"]),
    "pucker": ("curves", ["pucker"]),
    "head_yaw": ("head_rotation", [0]),
    "head_pitch": ("head_rotation", [1]),
    "head_roll": ("head_rotation", [2]),
}


def load_clip_truth(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz, allow_pickle=False) as gt:
        ids = [str(c) for c in gt["curve_ids"]]
        curves = np.asarray(gt["curves"], np.float64)
        rot = np.asarray(gt["head_rotation"], np.float64)
    out = {}
    for name, (kind, cols) in TARGETS.items():
        if kind == "curves":
            out[name] = curves[:, [ids.index(c) for c in cols]].mean(axis=1)
        else:
            out[name] = rot[:, cols[0]]
    return out


@torch.no_grad()
def run_clip(bundle, frames: np.ndarray, batch: int = 32) -> tuple[np.ndarray, float]:
    """Features [T, 6K] (relative to frame 0) and reconstruction L1 with frame 0 as the source."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)
    values, jacs, l1_sum = [], [], 0.0
    src = x[:1]
    kp_src = bundle.kp_detector(src)
    src_feat = bundle.generator.encode(src)
    for i in range(0, len(x), batch):
        drv = x[i : i + batch]
        kp = bundle.kp_detector(drv)
        values.append(kp["value"])
        jacs.append(kp.get("jacobian"))
        n = len(drv)
        kp_s = {k: v.expand(n, *v.shape[1:]) for k, v in kp_src.items()}
        out = bundle.generator(
            src.expand(n, -1, -1, -1),
            kp_source=kp_s,
            kp_driving=kp,
            source_features=src_feat.expand(n, -1, -1, -1),
            with_deformed=False,
        )
        l1_sum += float((out["prediction"] - drv).abs().mean(dim=(1, 2, 3)).sum())
    value = torch.cat(values).double().numpy()  # [T, K, 2]
    feats = [(value - value[:1]).reshape(len(value), -1)]
    if jacs[0] is not None:
        jac = torch.cat(jacs).double()
        rel = jac @ torch.inverse(jac[:1])
        feats.append((rel - torch.eye(2, dtype=rel.dtype)).reshape(len(value), -1).numpy())
    return np.concatenate(feats, axis=1), l1_sum / len(x)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = (x - mu) / sd
    ym = y.mean()
    w = np.linalg.solve(z.T @ z + alpha * len(z) * np.eye(z.shape[1]), z.T @ (y - ym))
    return w, mu, sd, ym


def ridge_predict(model, x: np.ndarray) -> np.ndarray:
    w, mu, sd, ym = model
    return ((x - mu) / sd) @ w + ym


def r2(y: np.ndarray, p: np.ndarray) -> float:
    ss = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - p) ** 2).sum() / ss) if ss > 0 else float("nan")


def probe(
    feats: list[np.ndarray], targets: list[dict], fit_idx: list[int], score_idx: list[int], groups: list[str]
) -> dict[str, float]:
    alphas = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    xf = np.concatenate([feats[i] for i in fit_idx])
    xs = np.concatenate([feats[i] for i in score_idx])
    out = {}
    fit_groups = sorted({groups[i] for i in fit_idx})
    fold_a = [i for i in fit_idx if fit_groups.index(groups[i]) % 2 == 0]
    fold_b = [i for i in fit_idx if fit_groups.index(groups[i]) % 2 == 1]
    for name in TARGETS:
        yf = np.concatenate([targets[i][name] for i in fit_idx])
        ys = np.concatenate([targets[i][name] for i in score_idx])
        best, best_score = alphas[0], -np.inf
        if fold_a and fold_b:
            for a in alphas:
                s = 0.0
                for tr, te in ((fold_a, fold_b), (fold_b, fold_a)):
                    m = ridge_fit(
                        np.concatenate([feats[i] for i in tr]), np.concatenate([targets[i][name] for i in tr]), a
                    )
                    s += r2(
                        np.concatenate([targets[i][name] for i in te]),
                        ridge_predict(m, np.concatenate([feats[i] for i in te])),
                    )
                if s > best_score:
                    best, best_score = a, s
        out[name] = r2(ys, ridge_predict(ridge_fit(xf, yf, best), xs))
    return out


def evaluate(bundle, clips: list[tuple[Path, np.ndarray, dict]], groups: list[str]) -> dict:
    """Reconstruction L1 and probe R2 of ``bundle``; ``bundle=None``: probe on the ground-truth landmarks."""
    feats, l1s = [], []
    for p, frames, _ in clips:
        if bundle is None:
            with np.load(p.with_suffix(".npz")) as gt:
                lm = np.asarray(gt["landmarks"], np.float64)[: len(frames)]
            feats.append((lm - lm[:1]).reshape(len(lm), -1))
            l1s.append(float("nan"))
            continue
        f, l1 = run_clip(bundle, frames)
        feats.append(f)
        l1s.append(l1)
    targets = [{k: v - v[0] for k, v in t.items()} for _, _, t in clips]
    ids = sorted(set(groups))
    fit_ids = set(ids[0::2])
    fit_idx = [i for i, g in enumerate(groups) if g in fit_ids]
    score_idx = [i for i, g in enumerate(groups) if g not in fit_ids]
    return {
        "reconstruction_l1": float(np.mean(l1s)),
        "probe_r2": probe(feats, targets, fit_idx, score_idx, groups),
        "clips_fit": len(fit_idx),
        "clips_scored": len(score_idx),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="synthetic set with test/ clips and .npz ground truth")
    ap.add_argument("--split", default="test")
    ap.add_argument("--checkpoint", help="model to evaluate (default: the shipped default model)")
    ap.add_argument("--config", help="config for an authors' checkpoint without one embedded")
    ap.add_argument("--max-clips", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="seed of the randomly initialised baseline")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--skip-baselines", action="store_true", help="only the given model (no random init, no ceiling)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    try:
        trained = load_model(args.checkpoint, args.config)
    except FommError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    random = build_model(trained.config, seed=args.seed)
    size = trained.image_size
    folder = Path(args.data) / args.split
    paths = [p for p in find_clips(folder) if p.with_suffix(".npz").exists()]
    if args.max_clips:
        paths = paths[: args.max_clips]
    if len({identity_of(p.name) for p in paths}) < 4:
        print(f"error: need clips of at least 4 identities with .npz ground truth in {folder}", file=sys.stderr)
        return 2
    clips = [(p, decode_video(p, size), load_clip_truth(p.with_suffix(".npz"))) for p in paths]
    clips = [(p, f[: len(t["jaw_open"])], {k: v[: len(f)] for k, v in t.items()}) for p, f, t in clips]
    groups = [identity_of(p.name) for p, _, _ in clips]
    res = {
        "model": trained.source,
        "checkpoint_hash": trained.checkpoint_hash,
        "data": str(folder),
        "clips": len(clips),
        "identities": len(set(groups)),
        "frames": int(sum(len(f) for _, f, _ in clips)),
        "trained": evaluate(trained, clips, groups),
    }
    nan = {"reconstruction_l1": float("nan"), "probe_r2": dict.fromkeys(TARGETS, float("nan"))}
    res["random_init"] = nan if args.skip_baselines else evaluate(random, clips, groups)
    res["landmarks_oracle"] = nan if args.skip_baselines else evaluate(None, clips, groups)
    res["seconds"] = round(time.time() - t0, 1)
    tr, rn, oc = res["trained"], res["random_init"], res["landmarks_oracle"]
    print(
        f"model {res['model']} ({res['checkpoint_hash']}); {res['clips']} held-out clips, {res['identities']} "
        f"identities, {res['frames']} frames; probe fitted on {tr['clips_fit']} clips, scored on "
        f"{tr['clips_scored']}"
    )
    print("| metric | trained | random init | ground-truth landmarks (probe ceiling) |")
    print("|---|---|---|---|")
    print(f"| reconstruction L1 (frame 0 source) | {tr['reconstruction_l1']:.4f} | {rn['reconstruction_l1']:.4f} | - |")
    for name in TARGETS:
        print(
            f"| probe R2 {name} | {tr['probe_r2'][name]:.3f} | {rn['probe_r2'][name]:.3f} | "
            f"{oc['probe_r2'][name]:.3f} |"
        )
    print(f"({res['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
